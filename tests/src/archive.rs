//! Support for the archive engine's tests: real trees with every kind of path the builder
//! must handle, bundles written through the library, GNU tar, and hand-crafted (hostile)
//! archives.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use airgap_archive::format::manifest::{FileRecord, FileType, Manifest, ManifestInput, FORMAT};
use airgap_archive::format::tarfmt::{self, EntryType, Header};
use airgap_archive::Entry;
use airgap_archive::{write_bundle, NoProgress, Plan, PlanOptions, WriteOptions, WriteSummary};

/// Text that does not compress to nothing (xorshift hex lines), `mib` MiB of it: a file
/// whose size on disk and in the bundle stays close, for tests of disk room.
pub fn text_file(path: &Path, mib: usize) {
    let mut s = String::with_capacity(mib << 20);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while s.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}\n"));
    }
    fs::write(path, s).expect("write text file");
}

/// A non-UTF-8 file name (Latin-1 "café.txt").
pub const NON_UTF8: &[u8] = b"caf\xe9.txt";

/// A name component of 150 bytes (tar's name field holds 100).
pub fn long_component() -> String {
    "d".repeat(150)
}

/// Build the reference tree under `root`: `root/src` is what gets bundled, `root/outside`
/// is what links leave to. Returns `root/src`.
pub fn build_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    let outside = root.join("outside");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::create_dir_all(outside.join("dir/inner")).unwrap();
    fs::write(outside.join("secret.txt"), "outside content\n").unwrap();
    fs::write(outside.join("dir/a.txt"), "a in linked dir\n").unwrap();
    fs::write(outside.join("dir/inner/b.txt"), "b in linked dir\n").unwrap();
    symlink("a.txt", outside.join("dir/rel-inside-linked")).unwrap();

    fs::write(src.join("regular.txt"), "hello\n").unwrap();
    fs::write(src.join("exec.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(src.join("empty-dir")).unwrap();
    fs::write(src.join("sub/deep.txt"), "deep\n").unwrap();
    symlink("regular.txt", src.join("rel-link")).unwrap();
    symlink(src.join("regular.txt"), src.join("abs-link")).unwrap();
    symlink("../outside/secret.txt", src.join("out-link")).unwrap();
    symlink("chain-b", src.join("chain-a")).unwrap();
    symlink("sub/deep.txt", src.join("chain-b")).unwrap();
    symlink("../outside/dir", src.join("linked-dir")).unwrap();
    symlink("sub", src.join("inner-dir-link")).unwrap();
    fs::write(src.join("hard1"), "hard linked content\n").unwrap();
    fs::hard_link(src.join("hard1"), src.join("hard2")).unwrap();
    fs::write(src.join("same1"), "identical bytes\n").unwrap();
    fs::write(src.join("same2"), "identical bytes\n").unwrap();
    let long_dir = src.join(long_component());
    fs::create_dir(&long_dir).unwrap();
    fs::write(
        long_dir.join(format!("{}.txt", "f".repeat(120))),
        "long name\n",
    )
    .unwrap();
    symlink(
        format!("{}.txt", "f".repeat(120)),
        long_dir.join(format!("{}-link", "l".repeat(110))),
    )
    .unwrap();
    fs::write(src.join("with space.txt"), "spaces\n").unwrap();
    fs::write(
        src.join(std::ffi::OsStr::from_bytes(NON_UTF8)),
        "latin-1 name\n",
    )
    .unwrap();
    // Same mtimes everywhere, so that identical files dedup and builds are comparable.
    let t = filetime_now();
    set_mtimes(root, t);
    src
}

fn filetime_now() -> i64 {
    1_700_000_000
}

/// Give every path under `root` (links included) the same mtime.
pub fn set_mtimes(root: &Path, secs: i64) {
    let status = Command::new("find")
        .arg(root)
        .args(["-exec", "touch", "-h", "-d"])
        .arg(format!("@{secs}"))
        .args(["{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Plan `entries` as plugin `files`.
pub fn plan(entries: &[Entry], options: PlanOptions) -> Result<Plan, airgap_archive::ArchiveError> {
    let mut plan = Plan::new(options);
    plan.add("files", entries, &NoProgress)?;
    Ok(plan)
}

/// A manifest input for a bundle called `name`.
pub fn input(name: &str) -> ManifestInput {
    ManifestInput {
        bundle_name: name.into(),
        airgap_version: "0.0.0-test".into(),
        ..ManifestInput::default()
    }
}

/// Write `plan` as `out` with default options (plus `unpacker` when given).
pub fn write(
    plan: &Plan,
    input: ManifestInput,
    out: &Path,
    unpacker: Option<PathBuf>,
) -> WriteSummary {
    write_bundle(
        plan,
        input,
        out,
        &WriteOptions {
            unpacker,
            ..WriteOptions::default()
        },
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("write_bundle failed: {e}"))
}

/// The `airgap-unpack` binary, when built (`cargo build -p airgap-unpack`).
pub fn unpacker() -> PathBuf {
    crate::bin("airgap-unpack")
}

/// Deterministic bytes that no compressor can shrink (as the members of a wheel), which the
/// gzip writer stores.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Run GNU tar with `args`; panics on failure; returns stdout.
pub fn gnu_tar(args: &[&str], dir: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One entry of a hand-made archive.
#[derive(Clone)]
pub struct Raw {
    /// Path as stored (with the top folder).
    pub path: Vec<u8>,
    /// Type.
    pub kind: EntryType,
    /// Mode bits as stored.
    pub mode: u32,
    /// Link target.
    pub link: Vec<u8>,
    /// Data.
    pub data: Vec<u8>,
    /// Declared size, when it should differ from the data's.
    pub declared: Option<u64>,
    /// For sparse entries: the logical size and the data segments.
    pub sparse: Option<(u64, Vec<(u64, u64)>)>,
}

impl Raw {
    /// A directory.
    pub fn dir(path: &str) -> Raw {
        Raw::new(path, EntryType::Dir, 0o755, b"", b"")
    }

    /// A file.
    pub fn file(path: &str, data: &[u8]) -> Raw {
        Raw::new(path, EntryType::File, 0o644, b"", data)
    }

    /// Anything.
    pub fn new(path: &str, kind: EntryType, mode: u32, link: &[u8], data: &[u8]) -> Raw {
        Raw {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            link: link.to_vec(),
            data: data.to_vec(),
            declared: None,
            sparse: None,
        }
    }
}

/// The manifest record that matches `raw` (path relative to the top folder `top`).
pub fn record_for(top: &str, raw: &Raw) -> FileRecord {
    let rel = String::from_utf8_lossy(&raw.path)
        .trim_start_matches(&format!("{top}/"))
        .to_string();
    let kind = match raw.kind {
        EntryType::Dir => FileType::Dir,
        EntryType::Symlink => FileType::Symlink,
        _ => FileType::File,
    };
    FileRecord {
        path: rel,
        path_hex: None,
        kind,
        size: if kind == FileType::File {
            raw.data.len() as u64
        } else {
            0
        },
        mode: raw.mode & 0o7777,
        sha256: (kind == FileType::File).then(|| sha256_hex(&raw.data)),
        plugin: "files".into(),
        package: None,
        target: (kind == FileType::Symlink)
            .then(|| String::from_utf8_lossy(&raw.link).into_owned()),
        target_hex: None,
    }
}

/// sha256 of bytes, hex (through `sha256sum`, to stay independent of the code under test).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Write a plain tar at `out`: first the manifest (with `records`), then `entries`.
pub fn craft(out: &Path, top: &str, records: Vec<FileRecord>, entries: &[Raw]) {
    let manifest = Manifest {
        format: FORMAT,
        bundle_name: top.into(),
        airgap_version: "0.0.0-test".into(),
        files: records,
        ..Manifest::default()
    };
    craft_manifest(out, top, &manifest, entries);
}

/// Write a plain tar at `out`: first `manifest` (as `TOP/.airgap/manifest.toml`), then
/// `entries`, each with its declared size and sparse map when it has one.
pub fn craft_manifest(out: &Path, top: &str, manifest: &Manifest, entries: &[Raw]) {
    let text = manifest.to_toml().unwrap();
    let mut buf = Vec::new();
    let mpath = format!("{top}/.airgap/manifest.toml");
    tarfmt::write_header(
        &mut buf,
        &Header {
            path: mpath.as_bytes(),
            kind: EntryType::File,
            mode: 0o644,
            size: text.len() as u64,
            mtime: 0,
            link: b"",
            sparse: None,
        },
    )
    .unwrap();
    buf.extend_from_slice(text.as_bytes());
    tarfmt::pad(&mut buf, text.len() as u64);
    for e in entries {
        tarfmt::write_header(
            &mut buf,
            &Header {
                path: &e.path,
                kind: e.kind,
                mode: e.mode,
                size: e.declared.unwrap_or(e.data.len() as u64),
                mtime: 0,
                link: &e.link,
                sparse: e
                    .sparse
                    .as_ref()
                    .map(|(real, segments)| (*real, segments.as_slice())),
            },
        )
        .unwrap();
        buf.extend_from_slice(&e.data);
        tarfmt::pad(&mut buf, e.data.len() as u64);
    }
    let n = buf.len() as u64;
    tarfmt::write_end(&mut buf, n).unwrap();
    fs::write(out, buf).unwrap();
}

/// Every path under `dir` with its kind, for "nothing else was written" checks.
pub fn snapshot(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .arg("-printf")
        .arg("%P %y %s\n")
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// What a tree holds, path by path: kind, mode, content hash or link target, mtime; the
/// times of what every unpack writes as it installs (`.airgap/` itself, its manifest and
/// prefixes) are left out, so that two unpacks of one bundle give the same state.
pub type State = BTreeMap<String, (char, u32, String, i64)>;

pub fn tree_state(root: &Path) -> State {
    fn walk(root: &Path, dir: &Path, out: &mut State) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&path).unwrap().to_string_lossy().into_owned();
                out.insert(rel, ('l', 0, t, std::os::unix::fs::MetadataExt::mtime(&m)));
            } else if m.is_dir() {
                out.insert(
                    rel,
                    (
                        'd',
                        mode,
                        String::new(),
                        std::os::unix::fs::MetadataExt::mtime(&m),
                    ),
                );
                walk(root, &path, out);
            } else {
                let sha = sha256_hex(&fs::read(&path).unwrap());
                out.insert(
                    rel,
                    ('f', mode, sha, std::os::unix::fs::MetadataExt::mtime(&m)),
                );
            }
        }
    }
    let mut out = State::new();
    walk(root, root, &mut out);
    // What every unpack writes when it installs (so two full unpacks differ there too).
    for own in [".airgap", ".airgap/manifest.toml", ".airgap/prefixes.toml"] {
        if let Some(e) = out.get_mut(own) {
            e.3 = 0;
        }
    }
    out
}
