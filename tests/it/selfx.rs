//! One file, one command: `airgap bundle --self-extracting` writes `NAME.run`, installed with
//! `sh NAME.run DEST` where there is nothing but `sh` (a minimal Debian root, `env -i`, the
//! network cut), reading the archive in place: a disk just larger than the `.run` plus the
//! installed tree is enough, where `tar xzf` + `NAME/unpack` does not fit. The carried
//! unpacker does the same with `NAME/unpack --from NAME.tar.gz DEST`; every unpack refuses
//! a too small disk before it writes, with the figures.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_tests::rootfs::{DebianRoot, Suite};
use airgap_tests::{airgap, conda, run, tempdir, Done};

/// `sh ARGS` as on a bare target: an empty environment.
fn sh(dir: &Path, args: &[&str]) -> Done {
    run(Command::new("env")
        .current_dir(dir)
        .args(["-i", "PATH=/usr/bin:/bin", "sh"])
        .args(args))
}

/// A small `files` project: `data/` with two files.
fn project(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("data/sub")).unwrap();
    fs::write(dir.join("data/sub/a.txt"), "a\n").unwrap();
    fs::write(dir.join("data/b.txt"), "b\n").unwrap();
    let config = dir.join("airgap.toml");
    fs::write(
        &config,
        "[bundle]\nname = \"demo\"\n\n[sources.files]\npaths = [\"data\"]\n",
    )
    .unwrap();
    config
}

/// `airgap bundle -c CONFIG -o OUT [extra]`.
fn bundle(config: &Path, out: &Path, extra: &[&str]) -> Done {
    run(airgap()
        .current_dir(config.parent().unwrap())
        .arg("bundle")
        .arg("-c")
        .arg(config)
        .arg("-o")
        .arg(out)
        .args(extra))
}

/// Flip one byte of a copy of `file` at `offset`.
fn flipped(file: &Path, offset: u64, to: &Path) {
    let mut bytes = fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x55;
    fs::write(to, bytes).unwrap();
}

/// The layout numbers of a `.run` header (`airgap_NAME=N`).
fn header_number(run_file: &Path, key: &str) -> u64 {
    let bytes = fs::read(run_file).unwrap();
    let text = String::from_utf8_lossy(&bytes[..4096]).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("airgap_block="))
        .unwrap();
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_self_extracting_bundle_lists_verifies_extracts_and_refuses_any_changed_byte() {
    let tmp = tempdir();
    let config = project(tmp.path());
    let out = tmp.path().join("demo.run");
    bundle(&config, &out, &["--self-extracting"]).success();
    assert!(tmp.path().join("demo.run.sha256").exists());
    // No plain archive beside it: the .run replaces it.
    assert!(!tmp.path().join("demo.tar.gz").exists());

    // --list: the bundle's files as tar tzf would list a plain bundle's.
    let list = sh(tmp.path(), &["demo.run", "--list"]).success();
    let lines: Vec<&str> = list.stdout.lines().collect();
    for want in [
        "demo/data/",
        "demo/data/b.txt",
        "demo/data/sub/a.txt",
        "demo/unpack",
    ] {
        assert!(lines.contains(&want), "{want} in {lines:?}");
    }
    // --verify writes nothing and succeeds.
    let done = sh(tmp.path(), &["demo.run", "--verify"]).success();
    assert!(done.stderr.contains("verified"), "{}", done.stderr);
    // --help.
    let done = sh(tmp.path(), &["demo.run", "--help"]).success();
    assert!(
        done.stdout.contains("--extract-only DIR"),
        "{}",
        done.stdout
    );
    // The build side reads it with the one reader: verify (with its .sha256), inspect, unpack.
    let done = run(airgap().arg("verify").arg(&out)).success();
    assert!(
        done.stderr.contains("matches its .sha256"),
        "{}",
        done.stderr
    );
    let done = run(airgap().arg("inspect").arg(&out)).success();
    assert!(done.stdout.contains("demo"), "{}", done.stdout);
    run(airgap()
        .arg("unpack")
        .arg(&out)
        .arg(tmp.path().join("by-cli")))
    .success();
    assert_eq!(
        fs::read_to_string(tmp.path().join("by-cli/data/sub/a.txt")).unwrap(),
        "a\n"
    );
    // GNU tar does not read a .run (documented); it reads the plain bundle.
    run(Command::new("tar").arg("tzf").arg(&out)).failure();

    // --extract-only: the bundle's folder, verified, nothing installed; its unpack works.
    sh(tmp.path(), &["demo.run", "--extract-only", "tree"]).success();
    assert!(tmp.path().join("tree/unpack").is_file());
    assert!(tmp.path().join("tree/.airgap/manifest.toml").is_file());
    run(Command::new(tmp.path().join("tree/unpack")).arg(tmp.path().join("from-tree"))).success();
    assert!(tmp.path().join("from-tree/data/b.txt").is_file());

    // sh NAME.run DEST installs.
    sh(tmp.path(), &["demo.run", "dest"]).success();
    assert_eq!(
        fs::read_to_string(tmp.path().join("dest/data/b.txt")).unwrap(),
        "b\n"
    );

    // One byte changed in each part (the header, the unpacker, the archive): --verify and
    // the install refuse, DEST stays absent, and airgap verify refuses too. Without the
    // .sha256 beside it, so that the parts' own checks are what refuse.
    let unpacker = header_number(&out, "airgap_unpacker_block") * 4096;
    let archive = header_number(&out, "airgap_archive_block") * 4096;
    let size = fs::metadata(&out).unwrap().len();
    for (part, offset) in [
        ("header comment", 100),
        ("header script", 1500),
        ("unpacker", unpacker + 5000),
        ("archive", archive + (size - archive) / 2),
    ] {
        let bad = tmp.path().join("bad.run");
        flipped(&out, offset, &bad);
        let done = sh(tmp.path(), &["bad.run", "--verify"]);
        assert_ne!(done.code, Some(0), "{part}: --verify passed");
        assert!(done.stderr.contains("error:"), "{part}: {}", done.stderr);
        let done = sh(tmp.path(), &["bad.run", "bad-dest"]);
        assert_ne!(done.code, Some(0), "{part}: the install passed");
        assert!(
            !tmp.path().join("bad-dest").exists(),
            "{part}: DEST was made"
        );
        run(airgap().arg("verify").arg(&bad)).failure();
        // Nothing left beside DEST, nor in TMPDIR's airgap-run directories of this run.
        let left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("staging"))
            .collect();
        assert!(left.is_empty(), "{part}: left {left:?}");
    }
}

#[test]
fn self_extracting_is_refused_up_front_without_an_unpacker_or_with_encryption() {
    let tmp = tempdir();
    let config = project(tmp.path());
    let out = tmp.path().join("demo.run");
    let done = bundle(
        &config,
        &out,
        &[
            "--self-extracting",
            "--unpacker",
            "/nonexistent/airgap-unpack",
        ],
    )
    .failure();
    assert!(
        done.stderr.contains("needs the static unpacker"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("help:"), "{}", done.stderr);
    assert!(!out.exists());
    fs::write(tmp.path().join("pass.txt"), "secret words\n").unwrap();
    let done = bundle(
        &config,
        &out,
        &["--self-extracting", "--passphrase-file", "pass.txt"],
    )
    .failure();
    assert!(
        done.stderr.contains("cannot be used with"),
        "{}",
        done.stderr
    );
    assert!(!out.exists());
}

/// The size of a file in KiB, rounded up.
fn kib(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len().div_ceil(1024)
}

/// `script` in the root after a tmpfs of `size_kib` is mounted at /small (the root's
/// command runs in its own mount namespace).
fn on_small_disk(root: &DebianRoot, size_kib: u64, script: &str) -> Done {
    root.run(&format!(
        "mkdir -p /small && mount -t tmpfs -o size={size_kib}k airgap-small /small || exit 99\n{script}"
    ))
}

/// A conda environment with programs that print their prefix, and a data file that makes
/// the installed tree large next to the unpacker: bundled plain and self-extracting.
fn conda_bundles(dir: &Path) -> (PathBuf, PathBuf) {
    assert!(
        conda::have_rattler(),
        "py-rattler is missing: run `cargo xtask setup` (xtask/setup/pip.txt installs it)"
    );
    let prefix = dir.join("source-machine/miniconda3/envs/hello-environment");
    conda::conda_env(&prefix, &dir.join("pkgs"));
    fs::create_dir_all(dir.join("data")).unwrap();
    airgap_tests::archive::text_file(&dir.join("data/corpus.txt"), 16);
    let config = dir.join("hello.toml");
    fs::write(
        &config,
        format!(
            "[bundle]\nname = \"hello\"\n\n[sources.conda]\nprefix = \"{}\"\n\n[sources.syslibs]\n\n[sources.files]\npaths = [\"data\"]\n",
            prefix.display()
        ),
    )
    .unwrap();
    let plain = dir.join("hello.tar.gz");
    bundle(&config, &plain, &[]).success();
    let selfx = dir.join("hello.run");
    bundle(&config, &selfx, &["--self-extracting"]).success();
    (plain, selfx)
}

/// The programs of the environment installed at `$D` run, and no placeholder of the source
/// prefix is left (as `e2e_conda_environment` checks).
const RUN_HELLO: &str = "for p in \"$D\"/env/bin/hello-*; do \"$p\" || exit 7; done; \
     grep -r anaconda1anaconda2 \"$D\"/env/bin \"$D\"/env/etc 2>/dev/null && exit 8; \
     test -s \"$D\"/data/corpus.txt";

#[test]
fn sh_run_installs_in_a_clean_root_on_a_disk_with_room_for_the_run_and_the_tree_only() {
    let tmp = tempdir();
    let (plain, selfx) = conda_bundles(tmp.path());
    let root = DebianRoot::new(Suite::Bookworm);
    root.copy_in(&plain, "/root/hello.tar.gz");
    root.copy_in(&selfx, "/root/hello.run");
    // GNU tar reads the plain bundle.
    let done = root.run("tar tzf /root/hello.tar.gz > /dev/null");
    assert_eq!(done.code, Some(0), "{}", done.stderr);

    // On the root's own disk: `sh hello.run DEST` alone (env -i, no network), and the
    // programs run; its size is what a tmpfs must hold.
    let done = root.run(&format!(
        "mkdir -p /probe && cd /root && sh hello.run /probe/hello && D=/probe/hello && {RUN_HELLO} && du -sk /probe/hello"
    ));
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let tree_kib: u64 = done
        .stdout
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Room for the .run, the installed tree, the unpacker the header copies to $TMPDIR
    // (on the same small disk, so that a copy of the archive there would not fit either)
    // and 2 MiB: no room for an extracted copy.
    let unpacker_kib = header_number(&selfx, "airgap_unpacker_blocks") * 4;
    let size = kib(&selfx) + tree_kib + unpacker_kib + 2048;
    assert!(
        tree_kib > kib(&selfx) - kib(&plain) + 2048 + 1024,
        "the workload must be larger than the margin: tree {tree_kib} KiB"
    );

    eprintln!(
        "tmpfs of {size} KiB: hello.run {} KiB, hello.tar.gz {} KiB, installed tree {tree_kib} KiB, unpacker {unpacker_kib} KiB",
        kib(&selfx),
        kib(&plain)
    );
    // The .run on the small disk, installed onto it.
    let done = on_small_disk(
        &root,
        size,
        &format!(
            "set -e; cp /root/hello.run /small/; mkdir /small/tmp; cd /small; TMPDIR=/small/tmp sh hello.run /small/installed; D=/small/installed; {RUN_HELLO}; test -z \"$(ls -A /small/tmp)\"; df -k /small >&2"
        ),
    );
    assert_eq!(
        done.code,
        Some(0),
        "sh hello.run on {size} KiB: {}\n{}",
        done.stdout,
        done.stderr
    );
    assert!(
        done.stdout.contains("hello from"),
        "the programs ran: {}",
        done.stdout
    );

    // The carried route, `tar xzf` + `hello/unpack`, does not fit on the same disk.
    let done = on_small_disk(
        &root,
        size,
        "cp /root/hello.tar.gz /small/ && cd /small && tar xzf hello.tar.gz && ./hello/unpack /small/installed; rc=$?; test -e /small/installed && exit 9; exit $rc",
    );
    assert_ne!(done.code, Some(99), "{}", done.stderr);
    assert_ne!(
        done.code,
        Some(9),
        "a half-installed DEST was left: {}",
        done.stderr
    );
    assert_ne!(
        done.code,
        Some(0),
        "tar xzf + unpack fitted on {size} KiB, so the test proves nothing: {}",
        done.stderr
    );
    assert!(
        done.stderr.contains("No space left on device") || done.stderr.contains("too little room"),
        "it failed for want of room: {}",
        done.stderr
    );

    // The carried route reading its archive in place (--from) fits, as the .run does.
    let done = on_small_disk(
        &root,
        size,
        &format!(
            "set -e; cp /root/hello.tar.gz /small/; cd /small; tar xzf hello.tar.gz hello/unpack hello/.airgap/airgap-unpack; ./hello/unpack --from hello.tar.gz /small/installed; D=/small/installed; {RUN_HELLO}"
        ),
    );
    assert_eq!(
        done.code,
        Some(0),
        "unpack --from on {size} KiB: {}\n{}",
        done.stdout,
        done.stderr
    );
}

#[test]
fn every_unpack_refuses_a_disk_too_small_before_writing_with_the_figures() {
    let tmp = tempdir();
    let config = project(tmp.path());
    airgap_tests::archive::text_file(&tmp.path().join("data/big.txt"), 3);
    let run_file = tmp.path().join("demo.run");
    bundle(&config, &run_file, &["--self-extracting"]).success();
    let plain = tmp.path().join("demo.tar.gz");
    bundle(&config, &plain, &[]).success();
    let root = DebianRoot::new(Suite::Bookworm);
    root.copy_in(&run_file, "/root/demo.run");
    root.copy_in(&plain, "/root/demo.tar.gz");
    root.copy_in(&airgap_tests::bin("airgap"), "/usr/local/bin/airgap");
    for (how, script) in [
        ("sh demo.run", "cd /root && sh demo.run /small/demo"),
        (
            "demo/unpack --from",
            "cd /root && tar xzf demo.tar.gz demo/unpack demo/.airgap/airgap-unpack && demo/unpack --from demo.tar.gz /small/demo",
        ),
        ("demo/unpack", "cd /root && tar xzf demo.tar.gz && demo/unpack /small/demo"),
        (
            "airgap unpack",
            "AIRGAP_NO_PROGRESS=1 /usr/local/bin/airgap unpack /root/demo.tar.gz /small/demo",
        ),
    ] {
        let done = on_small_disk(
            &root,
            1024,
            &format!("{script}; rc=$?; ls -A /small; exit $rc"),
        );
        assert_ne!(done.code, Some(99), "{how}: mount: {}", done.stderr);
        assert_ne!(done.code, Some(0), "{how}: unpacked on 1 MiB");
        assert!(
            done.stderr.contains("too little room on the file system of /small")
                && done.stderr.contains("MiB (")
                && done.stderr.contains("bytes) free"),
            "{how}: {}",
            done.stderr
        );
        assert!(done.stderr.contains("help: free space"), "{how}: {}", done.stderr);
        assert!(
            done.stdout.trim().is_empty(),
            "{how}: left on the disk: {}",
            done.stdout
        );
        let _ = root.run("rm -rf /root/demo");
    }
}

#[test]
fn a_signed_run_is_checked_whole_by_minisign_and_by_airgap() {
    use crate::seal_support::{keygen, tool};
    let tmp = tempdir();
    let config = project(tmp.path());
    let (_, _, sk, pk) = keygen(&tmp.path().join("keys"), "team");
    let out = tmp.path().join("demo.run");
    let done = run(airgap()
        .current_dir(tmp.path())
        .args(["bundle", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .args(["--self-extracting", "--sign"])
        .arg(&sk))
    .success();
    assert!(done.stderr.contains("Signed"), "{}", done.stderr);
    let minisign = tool("minisign");
    run(Command::new(&minisign)
        .arg("-Vm")
        .arg(&out)
        .arg("-p")
        .arg(&pk))
    .success();
    run(airgap()
        .arg("verify")
        .arg(&out)
        .arg("--trusted-key")
        .arg(&pk))
    .success();
    // The check reads a .run as any bundle.
    run(airgap().arg("check").arg(&out)).success();
    // One byte of the header's comment changed: the signature covers the header too.
    let bad = tmp.path().join("bad.run");
    flipped(&out, 100, &bad);
    fs::copy(
        tmp.path().join("demo.run.minisig"),
        tmp.path().join("bad.run.minisig"),
    )
    .unwrap();
    run(Command::new(&minisign)
        .arg("-Vm")
        .arg(&bad)
        .arg("-p")
        .arg(&pk))
    .failure();
    let done = run(airgap()
        .arg("verify")
        .arg(&bad)
        .arg("--trusted-key")
        .arg(&pk))
    .failure();
    assert!(done.stderr.contains("signature"), "{}", done.stderr);
}
