//! Careless hands and hostile paths through the real CLI (issue 15): what a hurried user or
//! an attacker with the transfer medium gives `airgap` instead of a bundle file.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airgap_tests::archive::unpacker;
use airgap_tests::{airgap, tempdir};

/// Run `cmd`, killing it (and failing) if it has not finished after a generous while: the
/// point is that it must not block, not how fast it is.
fn no_hang(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{cmd:?} hung on its bundle argument");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_given_as_the_bundle_is_refused_without_hanging() {
    let tmp = tempdir();
    let fifo = tmp.path().join("b.tar.gz");
    mkfifo(&fifo);
    let dest = tmp.path().join("dest");
    let shown = fifo.display().to_string();
    let expect = format!("error: {shown} is not a regular file (a fifo)");
    for args in [
        vec!["unpack", shown.as_str(), dest.to_str().unwrap()],
        vec!["verify", shown.as_str()],
        vec!["inspect", shown.as_str()],
    ] {
        let mut cmd = airgap();
        cmd.args(&args);
        let (code, err) = no_hang(cmd);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(&expect), "{args:?}: {err}");
        assert!(
            err.contains("help: give the bundle file itself"),
            "{args:?}: {err}"
        );
    }
    let mut cmd = Command::new(unpacker());
    cmd.arg(&fifo).arg(&dest);
    let (code, err) = no_hang(cmd);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&expect), "{err}");
    assert!(!dest.exists());
}
