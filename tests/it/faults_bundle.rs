//! Faults while bundling, through the real CLI: an unreadable file, a file that changes while it
//! is read, a full disk, Ctrl-C, and two runs writing one output. Each gives a clear error and
//! leaves nothing half-written at the output path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airgap_tests::{airgap, run, tempdir, Done};

/// `data/` with a few small files and one of `size` bytes that do not compress, and an
/// `airgap.toml` that bundles it with the files source.
fn project(dir: &Path, size: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    for i in 0..20 {
        std::fs::write(data.join(format!("sub/f{i}.txt")), format!("file {i}\n")).expect("write");
    }
    std::fs::write(data.join("big.bin"), noise(size)).expect("write big file");
    let config = dir.join("airgap.toml");
    std::fs::write(
        &config,
        "[bundle]\nname = \"faults\"\n[sources.files]\npaths = [\"data\"]\n",
    )
    .expect("write config");
    config
}

/// Bytes that gzip cannot shrink (xorshift), so that output size is predictable.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Names in `dir` other than the project's own, i.e. what a bundle run left there.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "data" && n != "airgap.toml")
        .collect();
    v.sort();
    v
}

fn bundle_cmd(config: &Path, out: &Path) -> Command {
    let mut cmd = airgap();
    cmd.args(["bundle", "--no-check", "-c"])
        .arg(config)
        .arg("-o")
        .arg(out);
    cmd
}

#[test]
fn an_unreadable_file_is_named_and_no_bundle_is_left() {
    let dir = tempdir();
    let config = project(dir.path(), 1024);
    let secret = dir.path().join("data/sub/secret.txt");
    std::fs::write(&secret, "not for you\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .expect("chmod");
    let out = dir.path().join("out.tar.gz");
    // Tests run as root, who reads anything: drop the capabilities that let it.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
    ]);
    let airgap = bundle_cmd(&config, &out);
    cmd.arg(airgap.get_program()).args(airgap.get_args());
    for (k, v) in airgap.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let done = run(&mut cmd).failure();
    assert!(
        done.stderr.contains(&secret.display().to_string())
            && done.stderr.contains("Permission denied"),
        "the unreadable file is named: {}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: airgap may not access"),
        "{}",
        done.stderr
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_file_growing_while_bundled_is_detected_and_no_bundle_is_left() {
    let dir = tempdir();
    let config = project(dir.path(), 8 << 20);
    let log = dir.path().join("data/sub/growing.log");
    std::fs::write(&log, "start\n").expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let log = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open log");
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"another line of log\n").expect("append");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = dir.path().join("out.tar.gz");
    let done = run(bundle_cmd(&config, &out).arg("--threads").arg("1"));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    let done = done.failure();
    assert!(
        done.stderr
            .contains("growing.log changed while the bundle was being written"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: stop whatever writes"),
        "{}",
        done.stderr
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_nothing() {
    let dir = tempdir();
    let config = project(dir.path(), 4 << 20);
    let small = dir.path().join("small-disk");
    std::fs::create_dir(&small).expect("mkdir");
    // A 1 MiB tmpfs in a mount namespace of its own, so that nothing outlives the test.
    let airgap = bundle_cmd(&config, &small.join("out.tar.gz"));
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs -o size=1m tmpfs \"$1\" || exit 99; shift; \"$@\"; rc=$?; \
         echo \"left: $(ls -A \"$0\" | tr '\\n' ' ')\"; exit $rc",
    ]);
    cmd.arg(&small).arg(&small).arg(airgap.get_program());
    cmd.args(airgap.get_args());
    for (k, v) in airgap.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let done = run(&mut cmd);
    assert_ne!(done.code, Some(99), "could not mount a tmpfs: {done:?}");
    let done = done.failure();
    assert!(
        done.stderr.contains("No space left on device"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: the file system holding"),
        "{}",
        done.stderr
    );
    assert!(
        done.stdout.lines().any(|l| l.trim_end() == "left:"),
        "the full disk must be left empty: {}",
        done.stdout
    );
}

/// Wait until `path` exists (the run has reached the writing stage).
fn wait_for(path: &Path, child: &mut std::process::Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the run ended ({status}) before {} appeared",
                path.display()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finish(child: std::process::Child) -> Done {
    Done::from(child.wait_with_output().expect("wait"))
}

#[test]
fn ctrl_c_while_writing_exits_130_and_leaves_nothing() {
    let dir = tempdir();
    let config = project(dir.path(), 96 << 20);
    let out = dir.path().join("out.tar.gz");
    let mut child = bundle_cmd(&config, &out)
        .args(["--threads", "1", "--level", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airgap");
    wait_for(&dir.path().join(".out.tar.gz.partial"), &mut child);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let done = finish(child);
    assert_eq!(done.code, Some(130), "{done:?}");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_run_finding_the_output_locked_stops_and_touches_nothing() {
    let dir = tempdir();
    let config = project(dir.path(), 1024);
    let out = dir.path().join("out.tar.gz");
    std::fs::write(&out, "an older bundle\n").expect("write");
    // Another writer holds the output's temporary file (flock(1) keeps it for 60 s).
    let partial = dir.path().join(".out.tar.gz.partial");
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&partial)
        .args(["sleep", "60"])
        .spawn()
        .expect("flock");
    let start = Instant::now();
    let done = loop {
        let done = run(&mut bundle_cmd(&config, &out));
        if done.stderr.contains("another airgap is writing") || start.elapsed().as_secs() > 20 {
            break done;
        }
        // flock(1) may not hold the lock yet.
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = holder.kill();
    let _ = holder.wait();
    let done = done.failure();
    assert!(
        done.stderr
            .contains(&format!("another airgap is writing {}", out.display())),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("help: wait for the other run"),
        "{}",
        done.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "an older bundle\n",
        "the output was touched"
    );
    assert!(partial.exists(), "the other run's file was removed");
}

#[test]
fn two_runs_writing_one_output_leave_one_whole_bundle() {
    let dir = tempdir();
    let config = project(dir.path(), 32 << 20);
    let out = dir.path().join("out.tar.gz");
    let spawn = || {
        bundle_cmd(&config, &out)
            .args(["--threads", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn airgap")
    };
    let mut first = spawn();
    wait_for(&dir.path().join(".out.tar.gz.partial"), &mut first);
    let second = spawn();
    let (first, second) = (finish(first), finish(second));
    let mut succeeded = 0;
    for done in [&first, &second] {
        if done.code == Some(0) {
            succeeded += 1;
        } else {
            assert!(
                done.stderr.contains("another airgap is writing"),
                "a run failed for another reason: {}",
                done.stderr
            );
        }
    }
    assert!(succeeded >= 1, "{first:?}\n{second:?}");
    assert_eq!(
        leftovers(dir.path()),
        vec![
            "out.cdx.json".to_string(),
            "out.tar.gz".to_string(),
            "out.tar.gz.report.html".to_string(),
            "out.tar.gz.report.md".to_string(),
            "out.tar.gz.sha256".to_string()
        ]
    );
    run(airgap().arg("verify").arg(&out)).success();
}

/// A run killed outright (SIGKILL) cannot clean up; the next run to the same output takes its
/// temporary file over and leaves a whole bundle, and removes the work dir it left in $TMPDIR.
#[test]
fn a_killed_runs_leftover_is_taken_over_by_the_next_run() {
    let dir = tempdir();
    let config = project(dir.path(), 64 << 20);
    let out = dir.path().join("out.tar.gz");
    let scratch = dir.path().join("tmp");
    std::fs::create_dir(&scratch).expect("mkdir");
    let mut child = bundle_cmd(&config, &out)
        .args(["--threads", "1", "--level", "9"])
        .env("TMPDIR", &scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn airgap");
    wait_for(&dir.path().join(".out.tar.gz.partial"), &mut child);
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(!out.exists(), "a killed run published an output");
    let left = leftovers(&scratch);
    assert!(
        left.len() == 1 && left[0].starts_with(&format!("airgap-work-{}-", child.id())),
        "the killed run's work dir: {left:?}"
    );
    let done = run(bundle_cmd(&config, &out).env("TMPDIR", &scratch)).success();
    assert!(
        done.stderr.contains(&format!(
            "removed {}, left by a bundle run that was killed",
            scratch.join(&left[0]).display()
        )),
        "{}",
        done.stderr
    );
    assert_eq!(leftovers(&scratch), Vec::<String>::new());
    assert_eq!(
        leftovers(dir.path()),
        vec![
            "out.cdx.json".to_string(),
            "out.tar.gz".to_string(),
            "out.tar.gz.report.html".to_string(),
            "out.tar.gz.report.md".to_string(),
            "out.tar.gz.sha256".to_string(),
            "tmp".to_string()
        ]
    );
    run(airgap().arg("verify").arg(&out)).success();
}
