//! What `airgap verify` approves means the same to every reader a user may use: GNU tar,
//! Python's tarfile, the carried unpacker. Each case is a bundle whose headers some other
//! reader reads differently from airgap's (hidden entries in the data of a directory or link
//! header, a prefix field, two long names, an owner, junk after a number); the test first
//! shows the difference with the real readers, then that `airgap verify`, `airgap unpack` and
//! the carried `airgap-unpack` refuse the bundle. The clean bundle is read alike by all of
//! them. `docs/reliability.md` ("Parser differential") lists the rule.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use airgap_archive::format::manifest::{FileRecord, FileType, Manifest, FORMAT};
use airgap_archive::format::tarfmt::{self, EntryType, Header, TarReader, BLOCK};
use airgap_tests::archive::{gnu_tar, noise, sha256_hex, snapshot, unpacker};
use airgap_tests::{airgap, python, run, tempdir};

/// One member as written: its header blocks (long names included) and its data.
struct Member {
    blocks: Vec<[u8; BLOCK]>,
    data: Vec<u8>,
}

fn header(path: &str, kind: EntryType, mode: u32, size: u64, link: &str) -> Vec<[u8; BLOCK]> {
    let mut out = Vec::new();
    tarfmt::write_header(
        &mut out,
        &Header {
            path: path.as_bytes(),
            kind,
            mode,
            size,
            mtime: 1_700_000_000,
            link: link.as_bytes(),
            sparse: None,
        },
    )
    .unwrap();
    out.chunks(BLOCK).map(|c| c.try_into().unwrap()).collect()
}

fn member(path: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) -> Member {
    Member {
        blocks: header(path, kind, mode, data.len() as u64, link),
        data: data.to_vec(),
    }
}

const OK: &[u8] = b"fine\n";

fn records() -> Vec<FileRecord> {
    let rec = |path: &str, kind: FileType, mode: u32| FileRecord {
        path: path.into(),
        path_hex: None,
        kind,
        size: 0,
        mode,
        sha256: None,
        plugin: "files".into(),
        package: None,
        target: None,
        target_hex: None,
    };
    vec![
        rec("d", FileType::Dir, 0o755),
        rec("sub", FileType::Dir, 0o755),
        FileRecord {
            size: OK.len() as u64,
            sha256: Some(sha256_hex(OK)),
            ..rec("sub/ok.txt", FileType::File, 0o644)
        },
        FileRecord {
            size: OK.len() as u64,
            sha256: Some(sha256_hex(OK)),
            ..rec("sub/hard", FileType::File, 0o644)
        },
        FileRecord {
            target: Some("ok.txt".into()),
            ..rec("sub/link", FileType::Symlink, 0o777)
        },
    ]
}

/// The clean bundle: manifest, `b`, `b/d`, `b/sub`, a file, a hard link to it, a symlink.
fn members() -> Vec<Member> {
    let manifest = Manifest {
        format: FORMAT,
        bundle_name: "b".into(),
        airgap_version: "0.0.0-test".into(),
        files: records(),
        ..Manifest::default()
    };
    let text = manifest.to_toml().unwrap();
    vec![
        member(
            "b/.airgap/manifest.toml",
            EntryType::File,
            0o644,
            "",
            text.as_bytes(),
        ),
        member("b", EntryType::Dir, 0o755, "", b""),
        member("b/d", EntryType::Dir, 0o755, "", b""),
        member("b/sub", EntryType::Dir, 0o755, "", b""),
        member("b/sub/ok.txt", EntryType::File, 0o644, "", OK),
        member(
            "b/sub/hard",
            EntryType::HardLink,
            0o644,
            "b/sub/ok.txt",
            b"",
        ),
        member("b/sub/link", EntryType::Symlink, 0o777, "ok.txt", b""),
    ]
}

fn checksum(b: &mut [u8; BLOCK]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn serialize(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        for b in &m.blocks {
            out.extend_from_slice(b);
        }
        out.extend_from_slice(&m.data);
        tarfmt::pad(&mut out, m.data.len() as u64);
    }
    let n = out.len() as u64;
    tarfmt::write_end(&mut out, n).unwrap();
    out
}

/// Entries hidden in the data of a header that airgap used to skip: a file in the working
/// directory of whoever runs `tar xf`, and a replaced `b/unpack` launcher.
fn hidden() -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in [
        ("victim.txt", &b"overwritten by the bundle\n"[..]),
        ("b/unpack", &b"#!/bin/sh\necho attacker\n"[..]),
    ] {
        for b in header(path, EntryType::File, 0o755, data.len() as u64, "") {
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(data);
        tarfmt::pad(&mut out, data.len() as u64);
    }
    out
}

fn index(members: &[Member], path: &str) -> usize {
    members
        .iter()
        .position(|m| {
            let b = m.blocks.last().unwrap();
            let n = b[..100].iter().position(|&x| x == 0).unwrap_or(100);
            &b[..n] == path.as_bytes()
        })
        .unwrap()
}

/// `path`'s header declares the hidden entries as its data.
fn data_on(path: &'static str) -> impl Fn(&mut [Member]) {
    move |ms: &mut [Member]| {
        let i = index(ms, path);
        let data = hidden();
        let b = ms[i].blocks.last_mut().unwrap();
        b[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        checksum(b);
        ms[i].data = data;
    }
}

/// A mutation of one field of `path`'s header.
fn field(path: &'static str, at: usize, bytes: &'static [u8]) -> impl Fn(&mut [Member]) {
    move |ms: &mut [Member]| {
        let i = index(ms, path);
        let b = ms[i].blocks.last_mut().unwrap();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        checksum(b);
    }
}

fn two_long_names(ms: &mut [Member]) {
    // GNU tar keeps the last long name, Python's tarfile the first.
    let i = index(ms, "b/sub/ok.txt");
    let mut blocks = Vec::new();
    for name in ["victim.txt", "b/sub/ok.txt"] {
        let mut l = header("././@LongLink", EntryType::Other(b'L'), 0o644, 0, "")
            .pop()
            .unwrap();
        l[124..136].copy_from_slice(format!("{:011o}\0", name.len() + 1).as_bytes());
        checksum(&mut l);
        blocks.push(l);
        let mut data = [0u8; BLOCK];
        data[..name.len()].copy_from_slice(name.as_bytes());
        blocks.push(data);
    }
    blocks.append(&mut ms[i].blocks);
    ms[i].blocks = blocks;
}

fn long_name_past_its_size(ms: &mut [Member]) {
    // airgap read `size` bytes (`b/sub/ok.txt`); GNU tar and Python read to the NUL in the
    // block (`b/sub/ok.txt.evil`). Found by the tar_differential fuzz target.
    let i = index(ms, "b/sub/ok.txt");
    let mut l = header("././@LongLink", EntryType::Other(b'L'), 0o644, 0, "")
        .pop()
        .unwrap();
    l[124..136].copy_from_slice(format!("{:011o}\0", "b/sub/ok.txt".len()).as_bytes());
    checksum(&mut l);
    let mut data = [0u8; BLOCK];
    data[..17].copy_from_slice(b"b/sub/ok.txt.evil");
    ms[i].blocks.insert(0, data);
    ms[i].blocks.insert(0, l);
}

type Mutation = Box<dyn Fn(&mut [Member])>;

fn cases() -> Vec<(&'static str, Mutation, &'static str)> {
    vec![
        (
            "directory header with data",
            Box::new(data_on("b/d")),
            "a directory header with 2048 bytes of data",
        ),
        (
            "hard link header with data",
            Box::new(data_on("b/sub/hard")),
            "a hard link header with 2048 bytes of data",
        ),
        (
            "symbolic link header with data",
            Box::new(data_on("b/sub/link")),
            "a symbolic link header with 2048 bytes of data",
        ),
        (
            "bytes in the prefix field",
            // Python prepends the prefix (`evil/b/sub/ok.txt`); GNU tar reads atime there.
            Box::new(field("b/sub/ok.txt", 345, b"evil")),
            "bytes in the prefix field",
        ),
        (
            "POSIX magic with a prefix",
            Box::new(|ms: &mut [Member]| {
                field("b/sub/ok.txt", 257, b"ustar\x0000")(ms);
                field("b/sub/ok.txt", 345, b"evil")(ms);
            }),
            "not a GNU tar header",
        ),
        (
            "two long names in a row",
            Box::new(two_long_names),
            "two extended names in a row",
        ),
        (
            "long name read past its size",
            Box::new(long_name_past_its_size),
            "is not one NUL-terminated name followed by zeros",
        ),
        (
            "file name ending in a slash",
            // GNU tar lists it as a directory and reads its data as more headers (the checker
            // refused it before too, as an empty path component). Found by the fuzz target.
            Box::new(field("b/sub/ok.txt", 0, b"b/sub/ok.tx/")),
            "a name ending in `/` on an entry that is not a directory",
        ),
        (
            "an owner",
            // GNU tar run as root gives the file to uid 65534.
            Box::new(|ms: &mut [Member]| {
                field("b/sub/ok.txt", 108, b"0177776\0")(ms);
                field("b/sub/ok.txt", 265, b"nobody\0")(ms);
            }),
            "an owner other than 0/0",
        ),
        (
            "junk after the size",
            // GNU tar reads 5; Python stops reading the archive there.
            Box::new(field("b/sub/ok.txt", 124, b"00000005 7\0\0")),
            "bytes after a number",
        ),
    ]
}

/// GNU tar's verbose listing (numeric owners, UTC, names as stored), or its error.
fn gnu_list(bundle: &Path) -> Result<String, String> {
    let out = Command::new("tar")
        .args(["-tvf"])
        .arg(bundle)
        .args(["--numeric-owner", "--full-time", "--quoting-style=escape"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const PY_LIST: &str = r#"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        print(repr((m.name, m.type.decode("latin-1"), m.size, m.linkname, m.uid, m.gid, m.uname, m.gname, m.mode)))
"#;

/// Python's tarfile listing: name, type, size, link, owner, mode of every member.
fn python_list(py: &python::Python, bundle: &Path) -> Result<String, String> {
    let out = py
        .command()
        .arg("-c")
        .arg(PY_LIST)
        .arg(bundle)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// airgap's reader, as the same tuples as [`PY_LIST`].
fn airgap_list(data: &[u8]) -> String {
    let mut r = TarReader::new(data);
    let mut out = String::new();
    while let Some(e) = r.next_entry().unwrap() {
        let (t, size) = match e.kind {
            EntryType::File => ("0", e.size),
            EntryType::HardLink => ("1", 0),
            EntryType::Symlink => ("2", 0),
            EntryType::Dir => ("5", 0),
            other => panic!("{other:?}"),
        };
        let py_str = |b: &[u8]| format!("'{}'", String::from_utf8(b.to_vec()).unwrap());
        out.push_str(&format!(
            "({}, '{t}', {size}, {}, 0, 0, '', '', {})\n",
            py_str(&e.path),
            py_str(&e.link),
            e.mode
        ));
    }
    out
}

fn oracle_python() -> python::Python {
    python::current()
        .or_else(|| python::all().pop())
        .expect("no Python 3 found: Python's tarfile is the second oracle of this test (run `cargo xtask setup`)")
}

#[test]
fn the_clean_bundle_is_read_alike_by_airgap_gnu_tar_and_python() {
    let tmp = tempdir();
    let bundle = tmp.path().join("b.tar");
    let data = serialize(&members());
    fs::write(&bundle, &data).unwrap();
    run(airgap().arg("verify").arg(&bundle)).success();
    let py = python_list(&oracle_python(), &bundle).unwrap();
    assert_eq!(py, airgap_list(&data));
    let gnu = gnu_list(&bundle).unwrap();
    let names: Vec<String> = gnu
        .lines()
        .map(|l| {
            format!(
                "{} {}",
                &l[..1],
                l.split_once(" 2023-11-14 22:13:20 ").unwrap().1
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "- b/.airgap/manifest.toml",
            "d b",
            "d b/d",
            "d b/sub",
            "- b/sub/ok.txt",
            "h b/sub/hard link to b/sub/ok.txt",
            "l b/sub/link -> ok.txt",
        ],
        "{gnu}"
    );
}

#[test]
fn headers_other_readers_read_differently_are_refused_by_every_airgap_reader() {
    let tmp = tempdir();
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    let py = oracle_python();
    let clean = work.join("clean.tar");
    fs::write(&clean, serialize(&members())).unwrap();
    let (gnu_clean, py_clean) = (gnu_list(&clean), python_list(&py, &clean));
    let bundle = work.join("b.tar");
    let mut failed = Vec::new();
    for (name, mutate, expect) in cases() {
        let mut ms = members();
        mutate(&mut ms);
        fs::write(&bundle, serialize(&ms)).unwrap();
        // The difference is real: GNU tar or Python reads something else than the clean bundle.
        let (gnu, pyl) = (gnu_list(&bundle), python_list(&py, &bundle));
        if gnu == gnu_clean && pyl == py_clean {
            failed.push(format!(
                "{name}: GNU tar and Python read it as the clean bundle"
            ));
            continue;
        }
        let before = snapshot(tmp.path());
        let dest = work.join("dest");
        let v = run(airgap().arg("verify").arg(&bundle));
        let u = run(airgap().arg("unpack").arg(&bundle).arg(&dest));
        let c = run(Command::new(unpacker()).arg(&bundle).arg(&dest));
        for (who, done) in [
            ("airgap verify", &v),
            ("airgap unpack", &u),
            ("airgap-unpack", &c),
        ] {
            if done.code == Some(0) || !done.stderr.contains(expect) {
                failed.push(format!(
                    "{name}: {who} said (exit {:?}) {}",
                    done.code, done.stderr
                ));
            }
        }
        if dest.exists() || snapshot(tmp.path()) != before {
            failed.push(format!("{name}: something was written"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn a_gzip_bundle_hiding_entries_in_a_directory_header_is_refused_before_tar_xzf() {
    let tmp = tempdir();
    let mut ms = members();
    data_on("b/d")(&mut ms);
    let tar = tmp.path().join("b.tar");
    fs::write(&tar, serialize(&ms)).unwrap();
    let status = Command::new("gzip")
        .args(["-n", "-k"])
        .arg(&tar)
        .status()
        .unwrap();
    assert!(status.success());
    let bundle = tmp.path().join("b.tar.gz");
    // GNU tar extracts the hidden entries: the file in its working directory, the launcher.
    let witness = tmp.path().join("witness");
    fs::create_dir(&witness).unwrap();
    gnu_tar(&["xzf", &bundle.to_string_lossy()], &witness);
    assert!(witness.join("victim.txt").exists());
    assert_eq!(
        fs::read_to_string(witness.join("b/unpack")).unwrap(),
        "#!/bin/sh\necho attacker\n"
    );
    // The documented way (`airgap verify B`, then `tar xzf B`) stops at the first step.
    let v = run(airgap().arg("verify").arg(&bundle)).failure();
    assert!(
        v.stderr
            .contains("b/d: a directory header with 2048 bytes of data"),
        "{}",
        v.stderr
    );
    let dest = tmp.path().join("dest");
    run(airgap().arg("unpack").arg(&bundle).arg(&dest)).failure();
    run(Command::new(unpacker()).arg(&bundle).arg(&dest)).failure();
    assert!(!dest.exists());
}

/// An airgap gzip bundle (members that carry their lengths, some stored) is one gzip
/// stream to GNU gzip and tar: `gzip -t` accepts it, `gzip -dc` gives exactly the tar stream
/// airgap's parallel reader gives, and `tar -xzf` extracts the same files.
#[test]
fn a_bundle_of_length_carrying_and_stored_members_is_read_alike_by_gnu_gzip_tar_and_airgap() {
    use airgap_archive::format::gzmember::{member_len, HEADER_LEN};
    use std::io::Read;
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let text: String = (0..90_000)
        .map(|i| format!("line {i}: {}\n", i * 7919 % 10007))
        .collect();
    fs::write(src.join("text.txt"), &text).unwrap();
    fs::write(src.join("noise.bin"), noise(3 << 20)).unwrap();
    let plan = airgap_tests::archive::plan(
        &[airgap_archive::Entry::path(&src, "data")],
        airgap_archive::PlanOptions::default(),
    )
    .unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    airgap_tests::archive::write(&plan, airgap_tests::archive::input("b"), &bundle, None);
    let bytes = fs::read(&bundle).unwrap();
    // Every member carries its length; incompressible ones are deflate's stored blocks.
    let (mut at, mut members, mut stored) = (0, 0, 0);
    while at < bytes.len() {
        let len = member_len(&bytes[at..]).unwrap_or_else(|| panic!("no member at {at}"));
        if (bytes[at + HEADER_LEN] >> 1) & 3 == 0 {
            stored += 1;
        }
        members += 1;
        at += len;
    }
    assert_eq!(at, bytes.len());
    assert!(
        members >= 5 && stored >= 2,
        "{members} members, {stored} stored"
    );
    let t = Command::new("gzip")
        .arg("-t")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let gnu = Command::new("gzip")
        .arg("-dc")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(gnu.status.success());
    let mut ours = Vec::new();
    let mut stream = airgap_archive::install::read::open_archive(&bundle).unwrap();
    stream.read_to_end(&mut ours).unwrap();
    stream.finish().unwrap();
    assert!(gnu.stdout == ours, "gzip -dc and airgap's reader differ");
    let x = tmp.path().join("x");
    fs::create_dir(&x).unwrap();
    gnu_tar(&["-xzf", &bundle.to_string_lossy()], &x);
    for f in ["text.txt", "noise.bin"] {
        assert!(
            fs::read(x.join("b/data").join(f)).unwrap() == fs::read(src.join(f)).unwrap(),
            "{f}"
        );
    }
    run(airgap().arg("verify").arg(&bundle)).success();
    let dest = tmp.path().join("dest");
    run(Command::new(unpacker()).arg(&bundle).arg(&dest)).success();
    assert!(
        fs::read(dest.join("data/noise.bin")).unwrap() == fs::read(src.join("noise.bin")).unwrap()
    );
}
