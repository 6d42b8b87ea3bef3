//! Shared by `crypto.rs` and `signing.rs`: a real project bundled with the `files` source, key
//! pairs from `airgap keygen`, and the standard `age` and `minisign` tools.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::{bin, run, Done};

/// The real CLI, plugins from the build directory.
pub fn airgap() -> Command {
    airgap_tests::with_build_plugins(airgap_tests::airgap())
}

/// A standard tool the interop tests need. A missing one fails the test: CI installs it.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: run `cargo xtask setup` (it installs xtask/setup/apt.txt), \
         or `apt-get install age minisign`"
    );
}

/// A project: a few files, one of them 3 MB so that the archive spans many age chunks.
pub fn project(dir: &Path) {
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    fs::write(dir.join("data/hello.py"), "print('hello')\n").unwrap();
    // Incompressible bytes, so the ciphertext is large too.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(dir.join("data/model.bin"), big).unwrap();
    fs::write(
        dir.join("airgap.toml"),
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data/\"]\n",
    )
    .unwrap();
}

/// `airgap bundle` of [`project`] in `dir` (run from `dir`, default output name), with `extra`.
pub fn bundle(dir: &Path, extra: &[&str]) -> Done {
    if !dir.join("airgap.toml").exists() {
        project(dir);
    }
    run(airgap()
        .current_dir(dir)
        .args(["bundle", "-c", "airgap.toml", "--no-check", "--unpacker"])
        .arg(bin("airgap-unpack"))
        .args(extra))
}

/// `airgap keygen --out DIR --name NAME`; returns (age identity, age public key file,
/// minisign secret key, minisign public key).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let done = run(airgap()
        .args(["keygen", "--out"])
        .arg(dir)
        .args(["--name", name]))
    .success();
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "keygen prints two public keys: {}",
        done.stdout
    );
    assert!(lines[0].starts_with("age1"), "{}", done.stdout);
    (
        dir.join(format!("{name}.age.key")),
        dir.join(format!("{name}.age.pub")),
        dir.join(format!("{name}.minisign.key")),
        dir.join(format!("{name}.minisign.pub")),
    )
}

/// The age public key in a `.age.pub` file.
pub fn recipient(pub_file: &Path) -> String {
    fs::read_to_string(pub_file).unwrap().trim().to_string()
}

/// Check an unpacked demo project.
pub fn assert_unpacked(dest: &Path) {
    assert_eq!(
        fs::read_to_string(dest.join("data/sub/a.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("data/hello.py")).unwrap(),
        "print('hello')\n"
    );
    assert_eq!(
        fs::metadata(dest.join("data/model.bin")).unwrap().len(),
        3_000_000
    );
}

/// Everything in `dir` (names only), sorted: to show nothing else was left there.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Flip one byte of a file at `offset` (from the end when negative).
pub fn flip_byte(path: &Path, offset: i64) {
    let mut bytes = fs::read(path).unwrap();
    let at = if offset < 0 {
        (bytes.len() as i64 + offset) as usize
    } else {
        offset as usize
    };
    bytes[at] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// Wait (at most 120 s) until a process below `root` (`script`) is blocked in read(2) on its
/// terminal (syscall 0 on x86-64, from `/proc/PID/syscall`, on a pty): the readiness signal that a
/// prompt reads its answer.
fn wait_until_reading(root: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if descendants(root).iter().any(|pid| {
            // "0 0xFD ...": read(2) on FD; reading the terminal when FD is the pty (the
            // prompt may open /dev/tty rather than read fd 0).
            let Ok(call) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
                return false;
            };
            let mut words = call.split_whitespace();
            if words.next() != Some("0") {
                return false;
            }
            let fd = words
                .next()
                .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
            fd.and_then(|fd| fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
                .is_some_and(|t| t.starts_with("/dev/pts/") || t == Path::new("/dev/tty"))
        }) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // a poll, not a guess
    }
    panic!("nothing under `script` waited for the answer on the terminal");
}

/// Every process whose chain of parents reaches `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// Run `argv` on a pseudo-terminal (`script`), typing each answer when its prompt is on the
/// screen (the terminal's output since the last answer ends with `": "`, where airgap blocks
/// reading), as a person answers a passphrase prompt. Returns what the terminal showed.
pub fn on_terminal(argv: &[&str], answers: &[&str]) -> Done {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Condvar, Mutex};
    let line = argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("AIRGAP_NO_PROGRESS", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`script` (bsdutils) runs commands on a pseudo-terminal");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // (what the terminal showed, the reader has seen the end)
    let seen = Arc::new((Mutex::new((Vec::<u8>::new(), false)), Condvar::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*seen;
                let mut s = lock.lock().unwrap();
                if n == 0 {
                    s.1 = true;
                    cv.notify_all();
                    return;
                }
                s.0.extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        })
    };
    let mut answered_at = 0;
    for answer in answers {
        let (lock, cv) = &*seen;
        let (s, timeout) = cv
            .wait_timeout_while(
                lock.lock().unwrap(),
                std::time::Duration::from_secs(120),
                |s| !s.1 && !s.0[answered_at..].ends_with(b": "),
            )
            .unwrap();
        assert!(
            !timeout.timed_out() && !s.1,
            "no prompt for answer {answer:?} on the terminal; it showed:\n{}",
            String::from_utf8_lossy(&s.0)
        );
        answered_at = s.0.len();
        drop(s);
        // The prompt is printed before echo is turned off: answer only once the program
        // waits in read(2), which it enters after turning echo off.
        wait_until_reading(child.id());
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    drop(stdin);
    reader.join().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).ok();
    }
    let (lock, _) = &*seen;
    let stdout = std::mem::take(&mut lock.lock().unwrap().0);
    Done::from(std::process::Output {
        status,
        stdout,
        stderr,
    })
}
