//! A bundle renamed over the signed one after "Signature ... is good" is never installed:
//! `unpack --trusted-key` reads the bundle through the one descriptor the signature was
//! checked on. The race is made deterministic from outside, without any hook in airgap: the
//! child's stderr is a pipe we filled ourselves, so that it can write exactly its signature
//! line and then blocks on its next line; the file is swapped while it waits.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::seal_support::{airgap, bundle, keygen, recipient};
use airgap_tests::{run, tempdir};

/// Bytes waiting in a pipe.
fn queued(fd: i32) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0);
    n as usize
}

/// Run `cmd` with its stderr held right after its first `prefix.len()` bytes; then call
/// `swap` and let it finish. Returns its stderr and exit status.
fn held_after(mut cmd: Command, prefix: &[u8], swap: impl FnOnce()) -> (String, bool) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, each then owned by one File.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (mut r, mut w) = unsafe {
        use std::os::fd::FromRawFd;
        (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1]))
    };
    let wfd = w.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let capacity = unsafe { libc::fcntl(wfd, libc::F_GETPIPE_SZ) } as usize;
    assert!(prefix.len() < 4096 && capacity % 4096 == 0);
    // A pipe is a ring of pages: fill all but `prefix.len()` bytes of the last one, so that
    // the child's writes of exactly its prefix fit and its next write blocks.
    let filled = capacity - prefix.len();
    let page = vec![b'#'; 4096];
    for _ in 0..capacity / 4096 - 1 {
        w.write_all(&page).unwrap();
    }
    w.write_all(&page[..4096 - prefix.len()]).unwrap();
    cmd.stderr(Stdio::from(w)).stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let start = Instant::now();
    while queued(r.as_raw_fd()) < capacity {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the child never wrote its signature line ({} bytes queued of {capacity})",
            queued(r.as_raw_fd())
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    swap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&rest[filled..]).into_owned();
    assert!(
        text.as_bytes().starts_with(prefix),
        "the child's stderr began differently from the calibration run:\n{text}"
    );
    (text, status.success())
}

/// stderr up to the end of the line with "Signature", from a `verify` of the same bundle.
fn signature_prefix(bundle: &Path, extra: &[&str]) -> Vec<u8> {
    let v = run(airgap().arg("verify").arg(bundle).args(extra)).success();
    let at = v.stderr.find("Signature").unwrap();
    let end = at + v.stderr[at..].find('\n').unwrap() + 1;
    v.stderr.as_bytes()[..end].to_vec()
}

fn swapped_after_the_signature(encrypt: bool) {
    let tmp = tempdir();
    let keys = tmp.path().join("keys");
    let (identity, age_pub, sk, pk) = keygen(&keys, "team");
    let to = recipient(&age_pub);
    let mut extra = vec!["--sign", sk.to_str().unwrap()];
    if encrypt {
        extra.extend(["--encrypt-to", to.as_str()]);
    }
    let good_dir = tmp.path().join("good");
    fs::create_dir_all(&good_dir).unwrap();
    bundle(&good_dir, &extra).success();
    // The attacker's bundle: other content, encrypted to the same public key, not signed.
    let evil_dir = tmp.path().join("evil");
    fs::create_dir_all(&evil_dir).unwrap();
    crate::seal_support::project(&evil_dir);
    fs::write(evil_dir.join("data/sub/a.txt"), "evil\n").unwrap();
    let evil_extra: Vec<&str> = if encrypt {
        vec!["--encrypt-to", to.as_str()]
    } else {
        vec![]
    };
    bundle(&evil_dir, &evil_extra).success();
    let name = if encrypt {
        "demo.tar.gz.age"
    } else {
        "demo.tar.gz"
    };
    let good = good_dir.join(name);
    let evil = evil_dir.join(name);
    let mut open = vec!["--trusted-key", pk.to_str().unwrap()];
    if encrypt {
        open.extend(["-i", identity.to_str().unwrap()]);
    }
    let prefix = signature_prefix(&good, &open);
    let signed = fs::read(&good).unwrap();
    let dest = tmp.path().join("dest");
    let mut cmd = airgap();
    cmd.arg("unpack").arg(&good).arg(&dest).args(&open);
    let (stderr, ok) = held_after(cmd, &prefix, || {
        fs::rename(&evil, &good).unwrap();
        let _ = fs::remove_file(good_dir.join(format!("{name}.sha256")));
    });
    // The swap happened: the path now holds the attacker's file.
    assert_ne!(fs::read(&good).unwrap(), signed);
    assert!(ok, "{stderr}");
    assert_eq!(
        fs::read_to_string(dest.join("data/sub/a.txt")).unwrap(),
        "a\n",
        "the file renamed over the bundle after its signature was checked got installed:\n{stderr}"
    );
}

#[test]
fn a_plain_bundle_swapped_after_its_signature_is_not_installed() {
    swapped_after_the_signature(false);
}

#[test]
fn an_encrypted_bundle_swapped_after_its_signature_is_not_installed() {
    swapped_after_the_signature(true);
}
