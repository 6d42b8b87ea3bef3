//! Bounded memory from tiny bundles (issue #15, finding 4). A bundle of a few hundred KB can
//! hold a file of hundreds of MB that compresses well, or a manifest of hundreds of MB: what
//! a reader holds must not grow with either. Peak RSS of the real CLI is read from the kernel
//! (`wait4`'s `ru_maxrss`), a resource bound, not a timing.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use airgap_archive::format::manifest::{Manifest, FORMAT};
use airgap_archive::format::model::{InstallStep, PrefixFile, PrefixMode};
use airgap_archive::format::tarfmt::{self, EntryType, Header};
use airgap_archive::Entry;
use airgap_archive::{PlanOptions, StepRecord};
use airgap_tests::archive::{input, plan, unpacker, write};
use airgap_tests::{airgap, tempdir, Done};

const MIB: u64 = 1 << 20;
/// The big file: far more than the bound.
const TEXT_SIZE: u64 = 256 * MIB;
const BINARY_SIZE: u64 = 64 * MIB;
/// Peak RSS allowed to a reader of such a bundle.
const BOUND: u64 = 64 * MIB;

/// Run `cmd` to its end; its output and its peak resident set size in bytes.
///
/// The peak is the exec'd program's own: `VmHWM` of `/proc/PID/status`, read while the child
/// is stopped at its exit (ptrace's exit event, before its memory is released). `wait4`'s
/// `ru_maxrss` would not do: Linux carries the high-water mark of the memory the child had
/// before `exec` into it, and that is this test process's (other tests' buffers included).
fn peak_rss(mut cmd: Command, dir: &Path) -> (Done, u64) {
    use std::os::unix::process::CommandExt;
    let out = dir.join("rss.stdout");
    let err = dir.join("rss.stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    // SAFETY: `ptrace(PTRACE_TRACEME)` is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Reaped by `waitpid` below.
    let pid = cmd
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {cmd:?} traced (ptrace reads its peak memory): {e}")
        })
        .id() as i32;
    let wait = |status: &mut i32| {
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, status, 0) };
        assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    };
    let mut status = 0;
    wait(&mut status);
    assert!(
        libc::WIFSTOPPED(status),
        "the child did not stop at exec (status {status:#x})"
    );
    // SAFETY: our stopped tracee; the options are a plain integer.
    let set = unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_TRACEEXIT as libc::c_long,
        )
    };
    assert_eq!(set, 0, "ptrace: {}", std::io::Error::last_os_error());
    let mut signal = 0;
    let mut hwm = None;
    loop {
        // SAFETY: our stopped tracee, continued with the signal it stopped for (if any).
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal as libc::c_long) };
        wait(&mut status);
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        signal = 0;
        if status >> 8 == libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8) {
            let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        } else if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) != libc::SIGTRAP {
            signal = libc::WSTOPSIG(status);
        }
    }
    let status = std::process::ExitStatus::from_raw(status);
    let done = Done {
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    };
    let hwm = hwm.unwrap_or_else(|| panic!("no VmHWM read at the exit of {cmd:?}"));
    (done, hwm * 1024)
}

/// The prefix the bundle's files hold: long, so that the binary file can take the test's
/// destination paths.
fn old_prefix() -> String {
    format!("/opt/{}", "build-placeholder/".repeat(6))
        .trim_end_matches('/')
        .to_string()
}

/// One repeating unit of the text file (its length is prime, so occurrences fall at every
/// offset of a read window).
fn text_unit(prefix: &str) -> Vec<u8> {
    format!("{prefix}/lib/python3.11/site-packages/x.py:1\n").into_bytes()
}

/// One unit of the binary file: a C string holding the prefix, then a NUL run.
fn binary_unit(prefix: &[u8]) -> Vec<u8> {
    let mut u = prefix.to_vec();
    u.extend_from_slice(b"/lib:/usr/lib\0\0\0\0\0\0\0");
    u
}

/// What the in-place binary rewrite makes of one unit (computed here, apart from the code
/// under test): the string with `new`, NUL-padded to the unit's length.
fn binary_unit_rewritten(old: &[u8], new: &[u8]) -> Vec<u8> {
    let unit = binary_unit(old);
    let mut u = new.to_vec();
    u.extend_from_slice(b"/lib:/usr/lib");
    u.resize(unit.len(), 0);
    u
}

/// Write `size` bytes of `unit` repeated (the last one cut).
fn write_repeated(path: &Path, unit: &[u8], size: u64) {
    let mut f = BufWriter::new(fs::File::create(path).unwrap());
    let mut left = size;
    while left > 0 {
        let n = left.min(unit.len() as u64) as usize;
        f.write_all(&unit[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// `path` is `unit` repeated up to `size` bytes, compared chunk by chunk.
fn assert_repeated(path: &Path, unit: &[u8], size: u64, what: &str) {
    assert_eq!(fs::metadata(path).unwrap().len(), size, "{what}: size");
    let mut f = std::io::BufReader::new(fs::File::open(path).unwrap());
    let mut buf = vec![0u8; unit.len()];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(unit.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        assert!(
            buf[..n] == unit[..n],
            "{what}: differs in the unit at byte {at}"
        );
        at += n as u64;
    }
}

#[test]
fn unpack_and_relocate_rewrite_a_huge_file_of_a_tiny_bundle_in_bounded_memory() {
    let tmp = tempdir();
    let old = old_prefix();
    let tree = tmp.path().join("src");
    fs::create_dir_all(&tree).unwrap();
    write_repeated(&tree.join("big.txt"), &text_unit(&old), TEXT_SIZE);
    // Whole units: a string cut by the end of the file is another case (the unit tests').
    let unit = binary_unit(old.as_bytes()).len() as u64;
    let binary_size = BINARY_SIZE / unit * unit;
    write_repeated(
        &tree.join("big.bin"),
        &binary_unit(old.as_bytes()),
        binary_size,
    );
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("b");
    inp.install_steps = vec![StepRecord {
        plugin: "files".into(),
        step: InstallStep::RewritePrefix {
            old_prefix: old.clone(),
            root: ".".into(),
            files: vec![
                PrefixFile::new("data/big.txt", PrefixMode::Text),
                PrefixFile::new("data/big.bin", PrefixMode::Binary),
            ],
        },
    }];
    let bundle = tmp.path().join("b.tar.gz");
    write(&p, inp, &bundle, None);
    fs::remove_dir_all(&tree).unwrap();
    let small = fs::metadata(&bundle).unwrap().len();
    assert!(
        small < 8 * MIB,
        "the bundle is {small} bytes: not a tiny bundle"
    );

    let dest = tmp.path().join("dest");
    let mut cmd = airgap();
    cmd.arg("unpack").arg(&bundle).arg(&dest);
    let (done, rss) = peak_rss(cmd, tmp.path());
    let done = done.success();
    eprintln!("airgap unpack of {small} bytes: peak RSS {} MiB", rss >> 20);
    assert!(
        rss < BOUND,
        "airgap unpack of a {small}-byte bundle peaked at {} MiB RSS (bound {} MiB)\n{}",
        rss >> 20,
        BOUND >> 20,
        done.stderr
    );
    let new = dest.display().to_string();
    let text_want = String::from_utf8(text_unit(&old))
        .unwrap()
        .replace(&old, &new)
        .into_bytes();
    let text_size = TEXT_SIZE / text_unit(&old).len() as u64 * text_want.len() as u64 + {
        // The cut last unit: the prefix was cut in it too, so it stays as it was.
        let cut = TEXT_SIZE % text_unit(&old).len() as u64;
        assert!(
            cut < old.len() as u64,
            "the cut unit must not hold the whole prefix"
        );
        cut
    };
    assert_text(
        &dest.join("data/big.txt"),
        &text_want,
        &text_unit(&old),
        text_size,
    );
    assert_repeated(
        &dest.join("data/big.bin"),
        &binary_unit_rewritten(old.as_bytes(), new.as_bytes()),
        binary_size,
        "binary after unpack",
    );

    let moved = tmp.path().join("moved-elsewhere");
    let mut cmd = airgap();
    cmd.arg("relocate").arg(&dest).arg(&moved);
    let (done, rss) = peak_rss(cmd, tmp.path());
    let done = done.success();
    eprintln!("airgap relocate: peak RSS {} MiB", rss >> 20);
    assert!(
        rss < BOUND,
        "airgap relocate peaked at {} MiB RSS (bound {} MiB)\n{}",
        rss >> 20,
        BOUND >> 20,
        done.stderr
    );
    let new2 = moved.display().to_string();
    let text_want2 = String::from_utf8(text_unit(&old))
        .unwrap()
        .replace(&old, &new2)
        .into_bytes();
    let cut = TEXT_SIZE % text_unit(&old).len() as u64;
    let text_size2 = TEXT_SIZE / text_unit(&old).len() as u64 * text_want2.len() as u64 + cut;
    assert_text(
        &moved.join("data/big.txt"),
        &text_want2,
        &text_unit(&old),
        text_size2,
    );
    assert_repeated(
        &moved.join("data/big.bin"),
        &binary_unit_rewritten(old.as_bytes(), new2.as_bytes()),
        binary_size,
        "binary after relocate",
    );
    fs::remove_dir_all(&moved).unwrap();

    // The carried unpacker runs the same rewrite.
    let dest3 = tmp.path().join("carried");
    let mut cmd = Command::new(unpacker());
    cmd.arg(&bundle).arg(&dest3);
    let (done, rss) = peak_rss(cmd, tmp.path());
    let done = done.success();
    eprintln!("airgap-unpack: peak RSS {} MiB", rss >> 20);
    assert!(
        rss < BOUND,
        "airgap-unpack peaked at {} MiB RSS (bound {} MiB)\n{}",
        rss >> 20,
        BOUND >> 20,
        done.stderr
    );
    let new3 = dest3.display().to_string();
    let text_want3 = String::from_utf8(text_unit(&old))
        .unwrap()
        .replace(&old, &new3)
        .into_bytes();
    let text_size3 = TEXT_SIZE / text_unit(&old).len() as u64 * text_want3.len() as u64 + cut;
    assert_text(
        &dest3.join("data/big.txt"),
        &text_want3,
        &text_unit(&old),
        text_size3,
    );
    assert_repeated(
        &dest3.join("data/big.bin"),
        &binary_unit_rewritten(old.as_bytes(), new3.as_bytes()),
        binary_size,
        "binary after airgap-unpack",
    );
}

/// The text file after a rewrite: whole units rewritten to `want`, then the cut end of the
/// original unit as it was.
fn assert_text(path: &Path, want: &[u8], original: &[u8], size: u64) {
    let whole = TEXT_SIZE / original.len() as u64;
    let cut = (TEXT_SIZE % original.len() as u64) as usize;
    assert_eq!(fs::metadata(path).unwrap().len(), size, "text: size");
    let mut f = std::io::BufReader::new(fs::File::open(path).unwrap());
    let mut buf = vec![0u8; want.len()];
    for i in 0..whole {
        f.read_exact(&mut buf).unwrap();
        assert!(
            buf == want,
            "text: unit {i} is {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &original[..cut], "text: the cut end");
}

/// A gzip bundle whose manifest is `size` bytes (a valid manifest, then a comment), streamed
/// through `gzip -c`: a few hundred KB on disk.
fn bundle_with_manifest_of(out: &Path, size: u64) {
    let manifest = Manifest {
        format: FORMAT,
        bundle_name: "b".into(),
        airgap_version: "0.0.0-test".into(),
        ..Manifest::default()
    };
    let text = manifest.to_toml().unwrap();
    let mut gz = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out).unwrap())
        .spawn()
        .unwrap();
    let mut w = BufWriter::new(gz.stdin.take().unwrap());
    let mut head = Vec::new();
    tarfmt::write_header(
        &mut head,
        &Header {
            path: b"b/.airgap/manifest.toml",
            kind: EntryType::File,
            mode: 0o644,
            size,
            mtime: 0,
            link: b"",
            sparse: None,
        },
    )
    .unwrap();
    w.write_all(&head).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    let line = format!("#{}\n", "x".repeat(1022));
    let mut left = size - text.len() as u64;
    while left > 0 {
        let n = left.min(line.len() as u64) as usize;
        let chunk = if n == line.len() {
            &line[..]
        } else {
            &line[line.len() - n..]
        };
        w.write_all(chunk.as_bytes()).unwrap();
        left -= n as u64;
    }
    let mut tail = Vec::new();
    tarfmt::pad(&mut tail, size);
    let written = head.len() as u64 + size + tail.len() as u64;
    tarfmt::write_end(&mut tail, written).unwrap();
    w.write_all(&tail).unwrap();
    w.flush().unwrap();
    drop(w);
    assert!(gz.wait().unwrap().success());
}

#[test]
fn a_tiny_bundle_with_a_huge_manifest_is_refused_by_every_reader_in_bounded_memory() {
    let tmp = tempdir();
    let bundle = tmp.path().join("b.tar.gz");
    let size = 200 * MIB;
    bundle_with_manifest_of(&bundle, size);
    let small = fs::metadata(&bundle).unwrap().len();
    assert!(small < 2 * MIB, "the bundle is {small} bytes");
    let dest = tmp.path().join("dest");
    let expect = format!(
        "{}: the manifest is {size} bytes, over the {} bytes a manifest may have",
        bundle.display(),
        64 * MIB
    );
    let runs: Vec<(&str, Command)> = vec![
        ("verify", {
            let mut c = airgap();
            c.arg("verify").arg(&bundle);
            c
        }),
        ("inspect", {
            let mut c = airgap();
            c.arg("inspect").arg(&bundle);
            c
        }),
        ("unpack", {
            let mut c = airgap();
            c.arg("unpack").arg(&bundle).arg(&dest);
            c
        }),
        ("airgap-unpack", {
            let mut c = Command::new(unpacker());
            c.arg(&bundle).arg(&dest);
            c
        }),
    ];
    for (who, cmd) in runs {
        let (done, rss) = peak_rss(cmd, tmp.path());
        eprintln!("{who} of {small} bytes: peak RSS {} MiB", rss >> 20);
        let done = done.failure();
        assert!(done.stderr.contains(&expect), "{who}:\n{}", done.stderr);
        if who != "airgap-unpack" {
            assert!(
                done.stderr
                    .contains("help: airgap writes no manifest over 64 MiB"),
                "{who}:\n{}",
                done.stderr
            );
        }
        assert!(
            rss < BOUND,
            "{who} of a {small}-byte bundle peaked at {} MiB RSS (bound {} MiB)",
            rss >> 20,
            BOUND >> 20
        );
        assert!(!dest.exists(), "{who} left {}", dest.display());
    }
}

#[test]
fn an_extracted_or_unpacked_tree_with_a_huge_manifest_is_refused_before_it_is_read() {
    let tmp = tempdir();
    let tree = tmp.path().join("b");
    fs::create_dir_all(tree.join(".airgap")).unwrap();
    // Sparse: 200 MiB to a reader, nothing on disk.
    let size = 200 * MIB;
    fs::File::create(tree.join(".airgap/manifest.toml"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let expect = format!(
        "{}: the manifest is {size} bytes, over the {} bytes a manifest may have",
        tree.display(),
        64 * MIB
    );
    let dest = tmp.path().join("dest");
    let mut from_dir = Command::new(unpacker());
    from_dir.arg("--from-dir").arg(&tree).arg(&dest);
    let mut relocate = airgap();
    relocate.arg("relocate").arg(&tree);
    for (who, cmd) in [
        ("airgap-unpack --from-dir", from_dir),
        ("relocate", relocate),
    ] {
        let (done, rss) = peak_rss(cmd, tmp.path());
        let done = done.failure();
        assert!(done.stderr.contains(&expect), "{who}:\n{}", done.stderr);
        assert!(rss < BOUND, "{who} peaked at {} MiB RSS", rss >> 20);
    }
    assert!(!dest.exists());
}

#[test]
fn the_writer_refuses_a_manifest_over_the_cap_and_leaves_no_output() {
    let tmp = tempdir();
    let tree = tmp.path().join("src");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.txt"), "a").unwrap();
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let mut inp = input("b");
    // 65 warnings of 1 MiB: a manifest just over 64 MiB.
    inp.warnings = vec!["w".repeat(MIB as usize); 65];
    let out = tmp.path().join("b.tar.gz");
    let err = airgap_archive::write_bundle(
        &p,
        inp,
        &out,
        &airgap_archive::WriteOptions::default(),
        &airgap_archive::NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(err, airgap_archive::ArchiveError::ManifestTooLarge { max, .. } if max == 64 * MIB),
        "{err}"
    );
    assert!(
        err.to_string().contains(&out.display().to_string()),
        "{err}"
    );
    assert!(!out.exists());
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "src")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
