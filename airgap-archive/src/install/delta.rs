//! Applying a delta bundle onto the tree it was made against (`unpack DELTA --onto
//! INSTALLED`): the base is known by its manifest's sha256; the delta's own files are
//! verified as any bundle's while they are extracted into staging, and each file it takes
//! from the base is re-hashed there (with its prefix rewritten back to the bundled one when
//! the base relocated it) and hard-linked when its mode and mtime already agree, else copied.
//! A base whose files differ is refused, naming them, before anything outside staging
//! changes; the finished tree then takes the base's place in one atomic exchange.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::format::delta::{Delta, Reused};
use crate::format::manifest::{FileRecord, FileType, StreamedManifest};
use crate::format::model::PrefixMode;
use crate::install::relocate::{groups, read_state, rewrite_stream, WINDOW};
use crate::progress::Progress;

/// How many differing files an error names (the count says how many more there are).
const NAMED: usize = 20;

/// The prefix rewrites an unpack made in one file, in order: (prefix now, prefix bundled,
/// how). A file can be in several groups (a venv's `pyvenv.cfg` names its own root and the
/// base interpreter's); they are undone in the reverse order.
type Undo = Vec<(String, String, PrefixMode)>;

/// The installed base a delta goes onto.
pub(crate) struct Base {
    /// Its directory (absolute).
    pub root: PathBuf,
    manifest: StreamedManifest,
    /// The sha256 of its manifest's text.
    pub identity: String,
    /// Files its unpack relocated, with each rewrite in the order it was made.
    relocated: HashMap<String, Undo>,
}

impl Base {
    /// The tree at `onto`, as its `.airgap/` records it.
    pub(crate) fn open(onto: &Path, bundle: &Path) -> Result<Base, ArchiveError> {
        let wrong = |reason: String| ArchiveError::WrongBase {
            bundle: bundle.into(),
            onto: onto.into(),
            reason,
            files: Vec::new(),
        };
        let root = std::path::absolute(onto).map_err(|e| wrong(e.to_string()))?;
        match fs::symlink_metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(wrong("it is not a directory".into())),
            Err(e) => return Err(wrong(e.to_string())),
        }
        let manifest = crate::install::read::open_manifest_in(&root).map_err(|e| {
            wrong(format!(
                "it has no readable .airgap/manifest.toml, so it was not installed by airgap ({e})"
            ))
        })?;
        let identity = manifest
            .sha256()
            .map_err(|e| ArchiveError::io("reading", &root, e))?;
        let mut relocated = HashMap::new();
        let steps = groups(&manifest.meta);
        if !steps.is_empty() {
            let state = read_state(&root)?;
            for (step, original, _root, files) in steps {
                let Some(rec) = state.prefix.iter().find(|r| r.step == step) else {
                    continue;
                };
                if rec.current == original {
                    continue;
                }
                for f in files {
                    relocated
                        .entry(f.path.clone())
                        .or_insert_with(Vec::new)
                        .push((rec.current.clone(), original.to_string(), f.mode));
                }
            }
        }
        Ok(Base {
            root,
            manifest,
            identity,
            relocated,
        })
    }

    /// Refuse a delta made against another version, or no delta at all.
    pub(crate) fn check_delta(
        &self,
        bundle: &Path,
        delta: Option<&Delta>,
    ) -> Result<(), ArchiveError> {
        let Some(delta) = delta else {
            return Err(ArchiveError::WrongBase {
                bundle: bundle.into(),
                onto: self.root.clone(),
                reason:
                    "the bundle is whole, not a delta: install it with airgap unpack BUNDLE DEST"
                        .into(),
                files: Vec::new(),
            });
        };
        if delta.meta.base != self.identity {
            return Err(ArchiveError::WrongBase {
                bundle: bundle.into(),
                onto: self.root.clone(),
                reason: format!(
                    "its manifest's sha256 is {} ({}), the delta applies to {} ({})",
                    self.identity,
                    crate::text::escape(&self.manifest.meta.bundle_name),
                    delta.meta.base,
                    crate::text::escape(&delta.meta.base_name)
                ),
                files: Vec::new(),
            });
        }
        Ok(())
    }
}

/// Where a delta's patches are on the target.
pub(crate) enum Patches {
    /// Kept by the reader of the archive ([`crate::install::read::PATCH_SCRATCH`]).
    Scratch(PathBuf),
    /// In an extracted delta: `TREE/.airgap/patch/PATH.zst`.
    Tree(PathBuf),
}

impl Patches {
    fn of(&self, path: &[u8]) -> PathBuf {
        match self {
            Patches::Scratch(dir) => dir.join(crate::format::delta::patch_scratch_name(path)),
            Patches::Tree(tree) => {
                tree.join(OsStr::from_bytes(&crate::format::delta::patch_path(path)))
            }
        }
    }
}

/// Takes a delta's reused files from the base into staging, and keeps the ones that differ.
pub(crate) struct Filler<'a> {
    pub base: &'a Base,
    pub staging: &'a Path,
    patches: Patches,
    pub progress: &'a dyn Progress,
    /// The base's files that differ from its manifest (the first [`NAMED`]), and how many.
    pub differing: Vec<String>,
    pub count: u64,
    /// Files hard-linked and copied.
    pub linked: u64,
    pub copied: u64,
    pub patched: u64,
    buf: Vec<u8>,
}

impl<'a> Filler<'a> {
    pub(crate) fn new(
        base: &'a Base,
        staging: &'a Path,
        patches: Patches,
        progress: &'a dyn Progress,
    ) -> Self {
        Filler {
            base,
            staging,
            patches,
            progress,
            differing: Vec::new(),
            count: 0,
            linked: 0,
            copied: 0,
            patched: 0,
            buf: vec![0u8; 256 * 1024],
        }
    }

    fn differs(&mut self, text: String) {
        self.count += 1;
        if self.differing.len() < NAMED {
            self.differing.push(text);
        }
    }

    /// The error for the differing files, if any.
    pub(crate) fn verdict(&self, bundle: &Path) -> Result<(), ArchiveError> {
        if self.count == 0 {
            return Ok(());
        }
        let mut files = self.differing.clone();
        if self.count > files.len() as u64 {
            files.push(format!("and {} more", self.count - files.len() as u64));
        }
        Err(ArchiveError::WrongBase {
            bundle: bundle.into(),
            onto: self.base.root.clone(),
            reason: format!(
                "{} of the files the delta takes from it differ from its manifest (edited or removed since it was installed)",
                self.count
            ),
            files,
        })
    }

    /// Put the base's copy of `x` at its new path in staging, as `rec` says it must be.
    pub(crate) fn take(&mut self, x: &Reused, rec: &FileRecord) -> Result<(), ArchiveError> {
        let from = String::from_utf8_lossy(&x.from).into_owned();
        let Some(want) = rec.sha256.clone() else {
            self.differs(format!("{}: the manifest lists no content", rec.path));
            return Ok(());
        };
        let base_sha = match self.base.manifest.files.find(&x.from)? {
            Some((_, b)) if b.kind == FileType::File && (x.patch || b.sha256 == rec.sha256) => {
                b.sha256.clone().unwrap_or_default()
            }
            _ => {
                self.differs(format!(
                    "{from}: the base's manifest does not hold this content there"
                ));
                return Ok(());
            }
        };
        let src = self.base.root.join(OsStr::from_bytes(&x.from));
        let dst = self.staging.join(OsStr::from_bytes(&x.path));
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                self.differs(format!("{from}: no longer a regular file"));
                return Ok(());
            }
            Err(e) => {
                self.differs(format!("{from}: {e}"));
                return Ok(());
            }
        };
        let relocated = self.base.relocated.get(&from).cloned();
        if x.patch {
            return self.patched(x, rec, (&src, &dst), (&base_sha, relocated));
        }
        let same = meta.mode() & 0o7777 == rec.mode
            && meta.mtime() == x.mtime as i64
            && meta.mtime_nsec() == 0;
        let got = match relocated {
            Some(undo) => self.unrelocate(&src, &dst, &undo)?,
            None if same => {
                let got = self.hash(&src)?;
                if got == want && fs::hard_link(&src, &dst).is_ok() {
                    self.linked += 1;
                    return Ok(());
                }
                if got != want {
                    got
                } else {
                    self.copy(&src, &dst, &meta)?
                }
            }
            None => self.copy(&src, &dst, &meta)?,
        };
        if got != want {
            let _ = fs::remove_file(&dst);
            self.differs(format!(
                "{from}: its sha256 is {got}, the manifest says {want}"
            ));
            return Ok(());
        }
        self.copied += 1;
        set_mode_and_time(&dst, rec.mode, x.mtime)
    }

    /// A patched file: the base's file (its prefix put back when relocated) must hash as the
    /// base's manifest says; the patch decoded against it must hash as the new one does.
    fn patched(
        &mut self,
        x: &Reused,
        rec: &FileRecord,
        (src, dst): (&Path, &Path),
        (base_sha, relocated): (&str, Option<Undo>),
    ) -> Result<(), ArchiveError> {
        let from = String::from_utf8_lossy(&x.from).into_owned();
        let want = rec.sha256.clone().unwrap_or_default();
        if rec.size > crate::format::delta::MAX_PATCHED {
            self.differs(format!("{}: too large to be patched", rec.path));
            return Ok(());
        }
        let mut reference = Vec::new();
        let mut input = open_nofollow(src)?;
        (&mut input)
            .take(crate::format::delta::MAX_PATCHED * 2)
            .read_to_end(&mut reference)
            .map_err(|e| ArchiveError::io("reading", src, e))?;
        for (now, bundled, mode) in relocated.iter().flatten().rev() {
            let mut undone = Vec::with_capacity(reference.len());
            rewrite_stream(
                &mut reference.as_slice(),
                &mut undone,
                now.as_bytes(),
                bundled.as_bytes(),
                *mode,
                WINDOW,
            )
            .map_err(|e| ArchiveError::io("reading", src, e))?;
            reference = undone;
        }
        let got = hex::encode(Sha256::digest(&reference));
        if got != base_sha {
            self.differs(format!(
                "{from}: its sha256 is {got}, the base's manifest says {base_sha}"
            ));
            return Ok(());
        }
        let patch = self.patches.of(&x.path);
        let got = apply_patch(&patch, &reference, dst, rec.size)?;
        if got != want {
            let _ = fs::remove_file(dst);
            return Err(ArchiveError::Corrupt {
                bundle: patch,
                reason: format!(
                    "the patch of {} gives sha256 {got}, the manifest says {want}",
                    rec.path
                ),
            });
        }
        self.patched += 1;
        self.progress.advance(rec.size);
        set_mode_and_time(dst, rec.mode, x.mtime)
    }

    fn hash(&mut self, src: &Path) -> Result<String, ArchiveError> {
        let mut f = open_nofollow(src)?;
        let mut h = Sha256::new();
        loop {
            if self.progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let n = f
                .read(&mut self.buf)
                .map_err(|e| ArchiveError::io("reading", src, e))?;
            if n == 0 {
                break;
            }
            h.update(&self.buf[..n]);
            self.progress.advance(n as u64);
        }
        Ok(hex::encode(h.finalize()))
    }

    fn copy(
        &mut self,
        src: &Path,
        dst: &Path,
        meta: &fs::Metadata,
    ) -> Result<String, ArchiveError> {
        crate::install::copy::copy_file(src, dst, 0o600, meta, &mut self.buf, self.progress)
    }

    /// Copy a file the base's unpack relocated with its prefix put back as bundled, so that
    /// it hashes as the manifest says; staging's own rewrite then gives it the new prefix.
    /// Each rewrite is undone in a pass of its own, the last one into `dst`, through
    /// scratch files beside it.
    fn unrelocate(&mut self, src: &Path, dst: &Path, undo: &Undo) -> Result<String, ArchiveError> {
        let mut from = src.to_path_buf();
        let mut scratch = Vec::new();
        let mut hash = String::new();
        for (i, (now, bundled, mode)) in undo.iter().rev().enumerate() {
            let last = i + 1 == undo.len();
            let to = if last {
                dst.to_path_buf()
            } else {
                let mut name = dst.as_os_str().to_os_string();
                name.push(format!(".airgap-undo-{i}"));
                PathBuf::from(name)
            };
            let mut input = open_nofollow(&from)?;
            let out = crate::install::read::new_file(&to)
                .map_err(|e| ArchiveError::io("creating", &to, e))?;
            let mut out = HashTee {
                out: io::BufWriter::new(out),
                hash: Sha256::new(),
            };
            rewrite_stream(
                &mut input,
                &mut out,
                now.as_bytes(),
                bundled.as_bytes(),
                *mode,
                WINDOW,
            )
            .and_then(|_| out.out.flush())
            .map_err(|e| ArchiveError::io("rewriting", &to, e))?;
            hash = hex::encode(out.hash.finalize());
            if !last {
                scratch.push(to.clone());
            }
            from = to;
        }
        for s in scratch {
            let _ = fs::remove_file(s);
        }
        Ok(hash)
    }
}

fn set_mode_and_time(dst: &Path, mode: u32, mtime: u64) -> Result<(), ArchiveError> {
    let f = fs::File::open(dst).map_err(|e| ArchiveError::io("writing", dst, e))?;
    f.set_permissions(fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| ArchiveError::io("writing", dst, e))?;
    let t = FileTime::from_unix_time(mtime as i64, 0);
    filetime::set_file_handle_times(&f, Some(t), Some(t))
        .map_err(|e| ArchiveError::io("writing", dst, e))
}

/// Decode the patch at `patch` against `reference` into `dst` (new), at most `size` bytes;
/// returns the sha256 of what it wrote.
#[cfg(feature = "zstd")]
fn apply_patch(
    patch: &Path,
    reference: &[u8],
    dst: &Path,
    size: u64,
) -> Result<String, ArchiveError> {
    use zstd::zstd_safe::DParameter;
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: patch.into(),
        reason,
    };
    let input = open_nofollow(patch).map_err(|_| corrupt("the delta's patch is missing".into()))?;
    let mut dec =
        zstd::stream::read::Decoder::with_ref_prefix(io::BufReader::new(input), reference)
            .map_err(|e| corrupt(e.to_string()))?;
    dec.set_parameter(DParameter::WindowLogMax(27))
        .map_err(|e| corrupt(e.to_string()))?;
    let out =
        crate::install::read::new_file(dst).map_err(|e| ArchiveError::io("creating", dst, e))?;
    let mut out = HashTee {
        out: io::BufWriter::new(out),
        hash: Sha256::new(),
    };
    let n =
        io::copy(&mut (&mut dec).take(size + 1), &mut out).map_err(|e| corrupt(e.to_string()))?;
    out.out
        .flush()
        .map_err(|e| ArchiveError::io("writing", dst, e))?;
    if n != size {
        return Err(corrupt(format!("the patch gives {n} bytes, not {size}")));
    }
    Ok(hex::encode(out.hash.finalize()))
}

/// This unpacker was built without zstd: it cannot apply a patch.
#[cfg(not(feature = "zstd"))]
fn apply_patch(patch: &Path, _: &[u8], _: &Path, _: u64) -> Result<String, ArchiveError> {
    Err(ArchiveError::Corrupt {
        bundle: patch.into(),
        reason: "this unpacker was built without zstd and cannot apply the delta's patches: apply it with airgap".into(),
    })
}

/// Writes through, hashing what passes.
struct HashTee<W> {
    out: W,
    hash: Sha256,
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn open_nofollow(path: &Path) -> Result<fs::File, ArchiveError> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ArchiveError::io("reading", path, e))
}

/// Exchange two paths atomically (`renameat2(RENAME_EXCHANGE)`, Linux 3.15; ext4, xfs,
/// btrfs and tmpfs have it).
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    const RENAME_EXCHANGE: libc::c_uint = 2;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: two NUL-terminated paths that live across the call; no memory is shared.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
