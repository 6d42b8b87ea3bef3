//! Left behind (issue #15, finding 9): SIGTERM or SIGHUP during `unpack`, SIGTERM during
//! `bundle`, clean up as Ctrl-C does: no staging directory, no partial output, no work
//! directory in `$TMPDIR`. Each test waits for a line on stderr (`-v`) that says the run has
//! reached the point to interrupt, then sends the signal: no sleeps.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use airgap_archive::Entry;
use airgap_archive::PlanOptions;
use airgap_tests::archive::*;
use airgap_tests::{airgap, tempdir};

/// Read `child`'s stderr until a line containing `marker`; returns what was read. Panics if
/// the run ends first.
fn wait_for_line(
    child: &mut Child,
    marker: &str,
) -> (String, BufReader<std::process::ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the run ended before {marker:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(marker) {
            return (seen, reader);
        }
    }
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

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A bundle whose unpack takes seconds: a 4 GiB sparse file is hashed while unpacking.
fn slow_bundle(tmp: &Path) -> std::path::PathBuf {
    let tree = tmp.join("src");
    fs::create_dir_all(&tree).unwrap();
    let f = fs::File::create(tree.join("disk.img")).unwrap();
    f.set_len(4 << 30).unwrap();
    let p = plan(&[Entry::path(&tree, "data")], PlanOptions::default()).unwrap();
    let out = tmp.join("slow.tar.gz");
    write(&p, input("slow"), &out, None);
    out
}

#[test]
fn sigterm_or_sighup_during_unpack_leaves_nothing() {
    let tmp = tempdir();
    let bundle = slow_bundle(tmp.path());
    for sig in ["TERM", "HUP"] {
        let work = tmp.path().join(format!("work-{sig}"));
        fs::create_dir(&work).unwrap();
        let dest = work.join("dest");
        let mut child = airgap()
            .args(["-v", "unpack"])
            .arg(&bundle)
            .arg(&dest)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (mut seen, mut rest) = wait_for_line(&mut child, "staging in ");
        assert!(
            names(&work).iter().any(|n| n.contains(".airgap-staging-")),
            "{sig}: {:?}",
            names(&work)
        );
        signal(&child, sig);
        rest.read_to_string(&mut seen).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "SIG{sig}: {seen}");
        assert!(seen.contains("cancelled"), "SIG{sig}: {seen}");
        assert!(names(&work).is_empty(), "SIG{sig}: {:?}", names(&work));
    }
}

#[test]
fn sigterm_during_bundle_leaves_no_partial_output_and_no_work_directory() {
    let tmp = tempdir();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    // Data that does not compress to nothing, so that writing takes a while at level 9.
    let mut noise = Vec::with_capacity(96 << 20);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while noise.len() < 96 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(data.join("big.bin"), noise).unwrap();
    let config = tmp.path().join("airgap.toml");
    fs::write(
        &config,
        "[bundle]\nname = \"sig\"\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).unwrap();
    let out = tmp.path().join("out.tar.gz");
    let mut child = airgap()
        .args([
            "-v",
            "bundle",
            "--no-check",
            "--threads",
            "1",
            "--level",
            "9",
            "-c",
        ])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .env("TMPDIR", &scratch)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut seen, mut rest) = wait_for_line(&mut child, "writing ...");
    assert!(
        names(&scratch)
            .iter()
            .any(|n| n.starts_with("airgap-work-")),
        "{:?}",
        names(&scratch)
    );
    signal(&child, "TERM");
    rest.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    let left: Vec<_> = names(tmp.path())
        .into_iter()
        .filter(|n| !["data", "airgap.toml", "tmp"].contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}\n{seen}");
    assert!(names(&scratch).is_empty(), "{:?}", names(&scratch));
}
