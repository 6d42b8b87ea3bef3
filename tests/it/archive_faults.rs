//! Faults while unpacking: a disk that fills up, a failing install step, an unpack
//! interrupted by Ctrl-C or killed outright. DEST is complete or absent, and nothing is left
//! beside it (a killed unpack's staging directory is removed by the next one).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airgap_archive::format::manifest::StepRecord;
use airgap_archive::format::model::InstallStep;
use airgap_archive::Entry;
use airgap_archive::PlanOptions;
use airgap_tests::archive::*;
use airgap_tests::{airgap, bin, run, tempdir};

fn sh_step(description: &str, script: &str) -> StepRecord {
    StepRecord {
        plugin: "test".into(),
        step: InstallStep::Run {
            description: description.into(),
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: Default::default(),
        },
    }
}

/// A bundle of `tree` (written by `fill`) with `steps`.
fn bundle_of(tmp: &Path, name: &str, fill: impl FnOnce(&Path), steps: Vec<StepRecord>) -> PathBuf {
    let tree = tmp.join(format!("{name}-src"));
    fs::create_dir_all(&tree).unwrap();
    fill(&tree);
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input(name);
    inp.install_steps = steps;
    let out = tmp.join(format!("{name}.tar.gz"));
    write(&p, inp, &out, None);
    out
}

/// Names in `dir` (for "nothing beside DEST" checks).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn can_unshare_mount() -> bool {
    Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `airgap unpack` (or the carried unpacker) into a 1 MiB tmpfs mounted in a private mount
/// namespace. Returns (exit code, stderr, what the tmpfs holds afterwards).
fn unpack_on_small_disk(program: &Path, bundle: &Path, disk: &Path) -> (i32, String, String) {
    let script = r#"
        mount -t tmpfs -o size=1m airgap-test "$DISK" || exit 99
        "$PROG" $SUB "$BUNDLE" "$DISK/dest" 2>"$DISK.err"
        rc=$?
        df -k "$DISK" >&2
        find "$DISK" -mindepth 1 > "$DISK.left"
        exit $rc
    "#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("DISK", disk)
        .env("PROG", program)
        // `airgap unpack BUNDLE DEST`, `airgap-unpack BUNDLE DEST`
        .env(
            "SUB",
            if program.ends_with("airgap") {
                "unpack"
            } else {
                ""
            },
        )
        .env("BUNDLE", bundle)
        .env("AIRGAP_NO_PROGRESS", "1")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(
        code,
        99,
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = fs::read_to_string(format!("{}.err", disk.display())).unwrap_or_default();
    let left = fs::read_to_string(format!("{}.left", disk.display())).unwrap_or_default();
    (code, err, left)
}

#[test]
fn a_disk_that_fills_up_leaves_dest_absent_and_nothing_beside_it() {
    // The tests run as root (CI does): a machine without mount namespaces must fail, not pass.
    assert!(
        can_unshare_mount(),
        "this test needs `unshare --mount` as root, to mount a small tmpfs"
    );
    let tmp = tempdir();
    let marker = tmp.path().join("step-ran");
    let bundle = bundle_of(
        tmp.path(),
        "full",
        |t| {
            // Two copies of 640 KiB with different times: stored twice (the writer shares
            // only identical content, mode and time), counted once by the free-space check
            // (a lower bound), so the check lets the unpack start on 1 MiB and the disk
            // fills up while it writes the second copy.
            fs::write(t.join("small.txt"), "small\n").unwrap();
            airgap_tests::archive::text_file(&t.join("a-big.txt"), 1);
            let text = fs::read(t.join("a-big.txt")).unwrap();
            fs::write(t.join("a-big.txt"), &text[..640 << 10]).unwrap();
            fs::write(t.join("big.txt"), &text[..640 << 10]).unwrap();
            run(Command::new("touch")
                .args(["-m", "-d", "@1000000"])
                .arg(t.join("a-big.txt")))
            .success();
        },
        vec![sh_step("mark", &format!("touch {}", marker.display()))],
    );
    let disk = tmp.path().join("disk");
    fs::create_dir(&disk).unwrap();
    // The CLI, and the unpacker carried in bundles (the library's other front end).
    for program in [bin("airgap"), bin("airgap-unpack")] {
        let (code, err, left) = unpack_on_small_disk(&program, &bundle, &disk);
        assert_ne!(
            code,
            0,
            "{}: unpack succeeded on a 1 MiB disk",
            program.display()
        );
        assert!(
            err.contains("No space left on device") && err.contains("big.txt"),
            "{}: {err}",
            program.display()
        );
        assert_eq!(
            left.trim(),
            "",
            "{}: left on the disk: {left}",
            program.display()
        );
        assert!(!marker.exists(), "the install step ran");
    }
    assert!(fs::read_dir(&disk).unwrap().next().is_none());
}

#[test]
fn a_failing_install_step_through_the_cli_leaves_dest_absent() {
    let tmp = tempdir();
    let bundle = bundle_of(
        tmp.path(),
        "failing",
        |t| fs::write(t.join("a.txt"), "a\n").unwrap(),
        vec![
            sh_step("first step works", "echo fine > first.txt"),
            sh_step("second step fails", "echo 'pip: no such wheel' >&2; exit 7"),
        ],
    );
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let dest = work.join("dest");
    let u = run(airgap().arg("unpack").arg(&bundle).arg(&dest)).failure();
    assert!(
        u.stderr.contains("second step fails") && u.stderr.contains("pip: no such wheel"),
        "{}",
        u.stderr
    );
    assert!(!dest.exists());
    assert!(names(&work).is_empty(), "{:?}", names(&work));
    // An empty DEST made beforehand is still there, still empty.
    fs::create_dir(&dest).unwrap();
    run(airgap().arg("unpack").arg(&bundle).arg(&dest)).failure();
    assert!(fs::read_dir(&dest).unwrap().next().is_none());
    assert_eq!(names(&work), vec!["dest"]);
}

/// A bundle whose unpack takes seconds: a 4 GiB sparse file, all holes but a few bytes,
/// costs little to write but its holes are hashed while unpacking.
fn slow_bundle(tmp: &Path, marker: &Path) -> PathBuf {
    bundle_of(
        tmp,
        "slow",
        |t| {
            let f = fs::File::create(t.join("disk.img")).unwrap();
            f.set_len(4 << 30).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"boot", 3 << 30).unwrap();
            fs::write(t.join("a.txt"), "a\n").unwrap();
        },
        vec![sh_step("mark", &format!("touch {}", marker.display()))],
    )
}

/// Start `airgap unpack` and wait until its staging directory exists beside DEST.
fn start_unpack(bundle: &Path, dest: &Path) -> (Child, PathBuf) {
    let child = airgap()
        .arg("unpack")
        .arg(bundle)
        .arg(dest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staging = dest.parent().unwrap().join(format!(
        ".{}.airgap-staging-{}",
        dest.file_name().unwrap().to_string_lossy(),
        child.id()
    ));
    // Ready when the 4 GiB file (after a.txt in the bundle's order) is being written: the
    // unpack is then busy for seconds.
    let start = Instant::now();
    while !has_file(&staging, "disk.img") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no disk.img in the staging after 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, staging)
}

/// True when a file `name` is somewhere under `dir`.
fn has_file(dir: &Path, name: &str) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        e.file_name() == name
            || e.file_type().is_ok_and(|t| t.is_dir()) && has_file(&e.path(), name)
    })
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

#[test]
fn ctrl_c_during_unpack_exits_130_and_leaves_nothing() {
    let tmp = tempdir();
    let marker = tmp.path().join("step-ran");
    let bundle = slow_bundle(tmp.path(), &marker);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let dest = work.join("dest");
    let (child, staging) = start_unpack(&bundle, &dest);
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(!dest.exists() && !staging.exists());
    assert!(names(&work).is_empty(), "{:?}", names(&work));
    assert!(!marker.exists());
}

#[test]
fn a_killed_unpack_leaves_no_dest_and_the_next_one_removes_its_staging() {
    let tmp = tempdir();
    let marker = tmp.path().join("step-ran");
    let bundle = slow_bundle(tmp.path(), &marker);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let dest = work.join("dest");
    let (mut child, staging) = start_unpack(&bundle, &dest);
    signal(&child, "KILL");
    child.wait().unwrap();
    assert!(!dest.exists(), "DEST exists after SIGKILL");
    assert!(
        staging.is_dir(),
        "the killed unpack's staging should be there"
    );
    assert!(!marker.exists());

    // Things that look like staging but are not provably ours and stale stay untouched:
    // a live process's, a non-numeric one, a symlink, another DEST's.
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let live = work.join(format!(".dest.airgap-staging-{}", sleeper.id()));
    fs::create_dir(&live).unwrap();
    fs::write(live.join("keep"), "live").unwrap();
    let odd = work.join(".dest.airgap-staging-12ab");
    fs::create_dir(&odd).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, work.join(".dest.airgap-staging-4000000")).unwrap();
    let other = work.join(".other.airgap-staging-4000001");
    fs::create_dir(&other).unwrap();

    // The next unpack to the same DEST (a small bundle) cleans up and installs.
    let small = bundle_of(
        tmp.path(),
        "small",
        |t| fs::write(t.join("a.txt"), "a\n").unwrap(),
        vec![],
    );
    let u = run(airgap().arg("unpack").arg(&small).arg(&dest)).success();
    assert!(
        u.stderr.contains("left by an unpack that was killed"),
        "{}",
        u.stderr
    );
    assert!(!staging.exists(), "stale staging left");
    assert_eq!(fs::read_to_string(dest.join("data/a.txt")).unwrap(), "a\n");
    assert!(live.join("keep").exists() && odd.is_dir() && other.is_dir());
    assert!(outside.join("keep").exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}
