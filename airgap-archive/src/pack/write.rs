//! Writing a bundle: hash every file in parallel (pass 1), write the manifest first, then
//! stream a deterministic tar through a parallel compressor (pass 2), checking that no file
//! changed in between. The output appears atomically: temp file, fsync, rename.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::{fmt, thread};

use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::format::manifest::{
    begin_files, encode, end_files, write_record, FileRecord, FileType, Manifest, ManifestInput,
    AIRGAP_PLUGIN, FORMAT, MANIFEST_PATH, UNPACKER_PATH,
};
use crate::format::tarfmt::{self, EntryType, Header};
use crate::output::TempFile;
use crate::pack::plan::{Entries, Item, ItemKind, Plan};
use crate::pack::split::VolumeWriter;
use crate::progress::{Progress, Unit};
use crate::spill::{
    self, put_bytes, put_u32, put_u64, Decoder, Merge, Record, Sorter, Tape, TapeReader,
};
use airgap_io::read_full;

/// gzip level used when none is given: gzip's own default. libdeflate's level 6 in 1 MiB
/// members is 0.7% smaller than GNU `gzip -6`, which pays for the manifest's hashes and the
/// carried unpacker (a bundle no larger than `tar -czhf`'s), and still several times faster;
/// level 5 is 5% faster and as large as `gzip -6` (docs/performance.md).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// zstd level used when none is given.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
use crate::format::gzmember::{MemberCompressor, BLOCK as GZIP_BLOCK};
/// Read buffer for files.
const READ_BUF: usize = 256 * 1024;

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip, as independent members compressed in parallel (every gzip reader accepts
    /// concatenated members).
    Gzip {
        /// 1 (fast) to 9 (small).
        level: u32,
    },
    /// zstd with its own worker threads.
    Zstd {
        /// 1 to 19.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

/// How to write the bundle.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Compression.
    pub compression: Compression,
    /// Threads for hashing and compression (0 = all cores).
    pub threads: usize,
    /// The `airgap-unpack` binary to carry inside the bundle.
    pub unpacker: Option<PathBuf>,
    /// A transformation of the compressed stream on its way to disk (encryption): see
    /// [`OutputFilter`]. The `.sha256` is of the filtered bytes, as they are on disk.
    pub filter: Option<Arc<dyn OutputFilter>>,
    /// Records per sort kept in memory before they go to scratch files (0: the default,
    /// 16,384). A smaller number costs time, never a different bundle.
    pub memory_paths: usize,
    /// Write a self-extracting `.run` ([`crate::format::selfx`]): the sh header and the unpacker
    /// before the archive. Needs `unpacker`, and no `filter` (the unpacker has no crypto).
    pub self_extracting: bool,
    /// zstd only: long-distance matching over a 128 MiB window (`zstd --long`), which finds
    /// content repeated far apart in big environments. Every zstd reader decodes it with its
    /// default limits (window log 27).
    pub zstd_long: bool,
    /// Write the bundle as volumes of at most this many bytes ([`crate::format::volumes`]):
    /// `OUTPUT.001`, `OUTPUT.002`, … and the list `OUTPUT.volumes`, instead of `OUTPUT`
    /// (its `.sha256` is still written, of the whole). At least
    /// [`crate::format::volumes::MIN_SPLIT`]; not with `self_extracting`.
    pub split: Option<u64>,
    /// Write a delta against this base: files whose content the base holds are left out
    /// and listed in `.airgap/delta.toml` ([`crate::format::delta`]); the manifest stays
    /// the whole new version's.
    pub delta: Option<Arc<crate::pack::delta::DeltaBase>>,
    /// More of airgap's own files, by their path below the top folder (`.airgap/sbom.cdx.json`,
    /// `.airgap/self-test.toml`) and the file that holds each: the plan refuses `.airgap/`, so
    /// what the host itself adds about the bundle goes in here, listed and hashed like the rest.
    pub own_files: Vec<(&'static str, PathBuf)>,
}

/// A hook between the compressor and the output file, such as encryption (`airgap-seal`),
/// so that this crate needs no crypto. It sees the compressed archive as it streams, in the
/// order written, and must work in constant memory.
pub trait OutputFilter: Send + Sync + fmt::Debug {
    /// Wrap the output file; what the wrapper writes to `out` is what lands on disk.
    fn wrap(&self, out: HashingWriter) -> io::Result<Box<dyn FilteredOutput>>;
}

/// The writer an [`OutputFilter`] returns.
pub trait FilteredOutput: Write + Send {
    /// Write any trailer and give the output file back.
    fn finish(self: Box<Self>) -> io::Result<HashingWriter>;
}

impl FilteredOutput for HashingWriter {
    fn finish(self: Box<Self>) -> io::Result<HashingWriter> {
        Ok(*self)
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// The bundle.
    pub output: PathBuf,
    /// Regular files in the bundle.
    pub files: u64,
    /// Their total size.
    pub bytes_in: u64,
    /// Size of the archive.
    pub bytes_out: u64,
    /// Files stored as hard links to an identical earlier file.
    pub deduplicated: u64,
    /// sha256 of the archive (also in `OUTPUT.sha256`).
    pub sha256: String,
    /// The volume list, when the bundle was split ([`WriteOptions::split`]).
    pub volumes: Option<PathBuf>,
    /// A delta's files taken from its base (not in the archive), and their bytes.
    pub reused: (u64, u64),
    /// Of those, the ones carried as a patch against the base's file.
    pub patched: u64,
}

/// The POSIX sh launcher at the top of every bundle.
pub const LAUNCHER: &str = r#"#!/bin/sh
# Install this bundle into DEST without airgap installed:
#   tar xzf BUNDLE.tar.gz && BUNDLE/unpack DEST [--python PATH]
# On a small disk, extract only the unpacker and let it read the archive in place:
#   tar xzf BUNDLE.tar.gz BUNDLE/unpack BUNDLE/.airgap/airgap-unpack
#   BUNDLE/unpack --from BUNDLE.tar.gz DEST
# The unpacker carried in .airgap/ verifies every file against the manifest, installs into a
# staging directory beside DEST, runs the install steps, and renames into place only when
# everything succeeded.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 1
unpacker="$here/.airgap/airgap-unpack"
if [ ! -x "$unpacker" ]; then
    echo "error: $unpacker is missing: this bundle was written without its unpacker" >&2
    echo "help: install airgap on this machine and run: airgap unpack BUNDLE DEST" >&2
    exit 1
fi
exec "$unpacker" --from-dir "$here" "$@"
"#;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
enum Content {
    Disk(PathBuf),
    Memory(&'static [u8]),
}

/// One path to write, relative to the top folder.
struct Out {
    path: Vec<u8>,
    src: Src,
}

/// Where an output entry comes from: the plan, or airgap itself (with its mode).
enum Src {
    Plan(Item),
    Own(OutKind, u32),
}

#[derive(Debug, Clone)]
enum OutKind {
    File { content: Content },
    Dir,
}

impl Out {
    fn mode(&self) -> u32 {
        match &self.src {
            Src::Plan(i) => i.mode,
            Src::Own(_, m) => *m,
        }
    }
    fn mtime(&self) -> u64 {
        match &self.src {
            Src::Plan(i) => i.mtime,
            Src::Own(..) => 0,
        }
    }
    fn plugin(&self) -> &str {
        match &self.src {
            Src::Plan(i) => &i.plugin,
            Src::Own(..) => AIRGAP_PLUGIN,
        }
    }
    fn package(&self) -> Option<&str> {
        match &self.src {
            Src::Plan(i) => i.package.as_deref(),
            Src::Own(..) => None,
        }
    }
    /// The kind, borrowing plan data where possible.
    fn kind(&self) -> KindRef<'_> {
        match &self.src {
            Src::Plan(i) => match &i.kind {
                ItemKind::File { source, .. } => {
                    KindRef::File(ContentRef::Disk(source.path(&self.path)))
                }
                ItemKind::Dir => KindRef::Dir,
                ItemKind::Symlink { target } => KindRef::Symlink { target },
            },
            Src::Own(OutKind::File { content }, _) => KindRef::File(match content {
                Content::Disk(p) => ContentRef::Disk(std::borrow::Cow::Borrowed(p)),
                Content::Memory(m) => ContentRef::Memory(m),
            }),
            Src::Own(OutKind::Dir, _) => KindRef::Dir,
        }
    }
}

enum KindRef<'a> {
    File(ContentRef<'a>),
    Dir,
    Symlink { target: &'a [u8] },
}

enum ContentRef<'a> {
    Disk(std::borrow::Cow<'a, Path>),
    Memory(&'static [u8]),
}

/// Every output entry in archive order: the plan's paths and airgap's own (which cannot
/// collide: the plan refuses the reserved names).
struct Outputs<'a> {
    plan: Entries<'a>,
    next_plan: Option<Out>,
    own: std::iter::Peekable<std::slice::Iter<'a, OwnEntry>>,
}

impl<'a> Outputs<'a> {
    fn new(plan: &'a Plan, own: &'a [OwnEntry]) -> Self {
        Outputs {
            plan: plan.entries(),
            next_plan: None,
            own: own.iter().peekable(),
        }
    }

    fn next_out(&mut self) -> Result<Option<Out>, ArchiveError> {
        if self.next_plan.is_none() {
            self.next_plan = match self.plan.next() {
                Some(entry) => {
                    let (path, item) = entry?;
                    Some(Out {
                        path,
                        src: Src::Plan(item),
                    })
                }
                None => None,
            };
        }
        let own_first = match (&self.next_plan, self.own.peek()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(p), Some((own, _, _))) => *own < p.path.as_slice(),
        };
        if own_first {
            Ok(self.own.next().map(|(path, kind, mode)| Out {
                path: path.to_vec(),
                src: Src::Own(kind.clone(), *mode),
            }))
        } else {
            Ok(self.next_plan.take())
        }
    }
}

impl Iterator for Outputs<'_> {
    type Item = Result<Out, ArchiveError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_out().transpose()
    }
}

/// Result of hashing one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hashed {
    size: u64,
    sha256: [u8; 32],
    /// When the file has holes.
    sparse: Option<Box<Sparse>>,
}

/// What pass 2 needs of a file with holes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sparse {
    /// Data segments (offset, length).
    segments: Vec<(u64, u64)>,
    /// sha256 of the data segments alone (what pass 2 re-reads).
    data_sha256: [u8; 32],
}

impl Hashed {
    /// Data segments when the file has holes.
    fn segments(&self) -> Option<&[(u64, u64)]> {
        self.sparse.as_deref().map(|s| s.segments.as_slice())
    }
    /// sha256 of what pass 2 re-reads: the data segments, or the whole file.
    fn data_sha256(&self) -> &[u8; 32] {
        match &self.sparse {
            Some(s) => &s.data_sha256,
            None => &self.sha256,
        }
    }
}

/// A file to hash, by the identity of what is on disk: hard links are hashed once.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct HashJob {
    /// (device, inode), or (`u64::MAX`, index) for a file without one.
    id: (u64, u64),
    index: u64,
    source: PathBuf,
}

impl Record for HashJob {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.id.0);
        put_u64(out, self.id.1);
        put_u64(out, self.index);
        put_bytes(out, self.source.as_os_str().as_bytes());
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(HashJob {
            id: (d.u64()?, d.u64()?),
            index: d.u64()?,
            source: PathBuf::from(std::ffi::OsStr::from_bytes(d.bytes()?)),
        })
    }
}

/// The hash of output entry `index`.
#[derive(PartialEq, Eq)]
struct HashedAt {
    index: u64,
    hashed: Hashed,
}

impl PartialOrd for HashedAt {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HashedAt {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}

impl Record for HashedAt {
    fn encode(&self, out: &mut Vec<u8>) {
        let h = &self.hashed;
        put_u64(out, self.index);
        put_u64(out, h.size);
        out.extend_from_slice(&h.sha256);
        match &h.sparse {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&s.data_sha256);
                put_u64(out, s.segments.len() as u64);
                for &(off, len) in &s.segments {
                    put_u64(out, off);
                    put_u64(out, len);
                }
            }
        }
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        let index = d.u64()?;
        let size = d.u64()?;
        let sha256 = d.array32()?;
        let sparse = match d.u8()? {
            0 => None,
            _ => {
                let data_sha256 = d.array32()?;
                let n = d.u64()?;
                let mut segments = Vec::new();
                for _ in 0..n {
                    segments.push((d.u64()?, d.u64()?));
                }
                Some(Box::new(Sparse {
                    segments,
                    data_sha256,
                }))
            }
        };
        Ok(HashedAt {
            index,
            hashed: Hashed {
                size,
                sha256,
                sparse,
            },
        })
    }
}

/// What makes two files one in the archive: the first path (in archive order) with a given
/// content, mode and mtime is stored, later ones are hard links to it.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct DedupKey {
    sha256: [u8; 32],
    mode: u32,
    mtime: u64,
    index: u64,
    path: Vec<u8>,
}

impl Record for DedupKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sha256);
        put_u32(out, self.mode);
        put_u64(out, self.mtime);
        put_u64(out, self.index);
        put_bytes(out, &self.path);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(DedupKey {
            sha256: d.array32()?,
            mode: d.u32()?,
            mtime: d.u64()?,
            index: d.u64()?,
            path: d.bytes()?.to_vec(),
        })
    }
}

/// Output entry `index` is a hard link to the earlier entry at `target`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct LinkAt {
    index: u64,
    target: Vec<u8>,
}

impl Record for LinkAt {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.index);
        put_bytes(out, &self.target);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(LinkAt {
            index: d.u64()?,
            target: d.bytes()?.to_vec(),
        })
    }
}

/// An I/O error on the writer's scratch files.
fn scratch_error(e: io::Error) -> ArchiveError {
    ArchiveError::io(
        "writing scratch files in",
        std::env::temp_dir().join("(unnamed)"),
        e,
    )
}

fn internal(what: &str) -> ArchiveError {
    scratch_error(io::Error::other(what.to_string()))
}

/// Whether `output` can take a bundle, before any work: absent (in an existing directory) or
/// a regular file. The bundle is renamed over it, which would replace a device node (as
/// root, `-o /dev/null`), a fifo or a directory's name.
pub fn check_output(output: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::FileTypeExt;
    let bad = |reason: String| ArchiveError::Output {
        path: output.into(),
        reason,
    };
    match fs::symlink_metadata(output) {
        Ok(m) => {
            let t = m.file_type();
            let what = if t.is_file() {
                return Ok(());
            } else if t.is_dir() {
                "a directory"
            } else if t.is_symlink() {
                "a symbolic link"
            } else if t.is_fifo() {
                "a fifo"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else {
                "not a regular file"
            };
            Err(bad(format!(
                "is {what}; airgap writes a bundle only to a new or regular file"
            )))
        }
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            let parent = match output.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let bad_dir = |missing: bool, reason: String| ArchiveError::OutputDir {
                path: output.into(),
                dir: parent.into(),
                missing,
                reason,
            };
            match fs::metadata(parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(bad_dir(
                        false,
                        format!("{} is not a directory", parent.display()),
                    ))
                }
                Err(_) => {
                    return Err(bad_dir(
                        true,
                        format!("its directory {} does not exist", parent.display()),
                    ))
                }
            }
            // A file made and removed at once: a read-only or virtual directory (`/proc`)
            // is refused here, before any plugin runs, not after the build, under the
            // name of a temporary file the user never gave.
            let probe = parent.join(format!(".airgap-probe-{}", std::process::id()));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = fs::remove_file(&probe);
                    Ok(())
                }
                // Ours, left by a run of this process id that was killed: writable.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(bad_dir(
                    false,
                    format!("cannot create files in {}: {e}", parent.display()),
                )),
            }
        }
        Err(e) => Err(ArchiveError::io("reading", output, e)),
    }
}

/// An existing output must not be one of the files the plan reads: the rename would
/// destroy an input (the bundle is written beside it first, so the input is read whole).
fn check_output_not_input(plan: &Plan, output: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = fs::metadata(output) else {
        return Ok(());
    };
    for f in plan.iter_files() {
        let f = f?;
        if let Some(source) = &f.source {
            if let Ok(m) = fs::metadata(source) {
                if m.dev() == out.dev() && m.ino() == out.ino() {
                    return Err(ArchiveError::Output {
                        path: output.into(),
                        reason: format!(
                            "is one of the bundle's own inputs ({}, from {})",
                            f.path,
                            source.display()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Write `plan` as a bundle at `output`.
///
/// Every per-path state goes through sorted runs on disk ([`crate::spill`]), never through a
/// map: pass 1 hashes each inode once (jobs sorted by inode), the manifest is written from a
/// second walk of the plan, duplicates are found by sorting (content, mode, mtime), and pass
/// 2 walks the plan a third time beside the hashes and the links, all in archive order.
pub fn write_bundle(
    plan: &Plan,
    manifest: ManifestInput,
    output: &Path,
    options: &WriteOptions,
    progress: &dyn Progress,
) -> Result<WriteSummary, ArchiveError> {
    check_write(plan, &manifest.bundle_name, output, options)?;
    let job = Job {
        plan,
        own: own_entries(options)?,
        name: manifest.bundle_name.clone(),
        output,
        options,
        threads: thread_count(options),
        budget: memory_budget(options),
        progress,
    };
    let hashed = job.hash_pass()?;
    let listing = job.list_files(hashed)?;
    let (links, deduplicated) = job.find_duplicates(listing.files.dedup)?;
    let manifest_len = job.finish_manifest(&listing.spill, manifest)?;
    let (hashes, _) = listing.files.hashes.finish().map_err(scratch_error)?;
    let reused = match listing.reused {
        Some(mut r) => {
            let patches = job.make_patches(std::mem::take(&mut r.candidates))?;
            Some(r.finish(&job, patches)?)
        }
        None => None,
    };
    let temp = match options.split {
        Some(limit) => Dest::Volumes(VolumeWriter::new(output, limit)?),
        None => Dest::File(TempFile::new(output)?),
    };
    let finished = job.archive_pass(
        temp,
        ((&listing.spill.file, manifest_len), reused.as_ref()),
        &hashes,
        links,
        listing.files.unpacker_sha256,
        listing.files.bytes,
    )?;
    let bytes_out = finished.len;
    let (sha256, volumes) = commit_with_checksum(finished, output)?;
    Ok(WriteSummary {
        output: output.to_path_buf(),
        files: listing.files.count,
        bytes_in: listing.files.bytes,
        bytes_out,
        deduplicated,
        sha256,
        volumes,
        reused: reused
            .as_ref()
            .map(|r| (r.count, r.bytes))
            .unwrap_or((0, 0)),
        patched: reused.as_ref().map_or(0, |r| r.patches.len() as u64),
    })
}

/// Everything refused before any work, so that a bad output or name never costs a pass
/// over the files: the output's place, what a `.run` needs, an output that is one of the
/// inputs, and the bundle's name.
fn check_write(
    plan: &Plan,
    name: &str,
    output: &Path,
    options: &WriteOptions,
) -> Result<(), ArchiveError> {
    check_output(output)?;
    check_split(output, options)?;
    check_self_extracting(output, options)?;
    check_output_not_input(plan, output)?;
    check_bundle_name(name, output)
}

/// What volumes need, refused before any work: a size of at least
/// [`MIN_SPLIT`](crate::format::volumes::MIN_SPLIT), no `.run` (sh runs one file), and volume
/// and list names the output's directory can take.
pub fn check_split(output: &Path, options: &WriteOptions) -> Result<(), ArchiveError> {
    let Some(limit) = options.split else {
        return Ok(());
    };
    if options.self_extracting {
        return Err(ArchiveError::SelfExtracting {
            output: output.into(),
            reason: "cannot be split into volumes: sh runs a .run as one file".into(),
            help: "drop --self-extracting (the volumes are read by airgap unpack NAME.tar.gz.001, or by cat and tar), or drop --split-size".into(),
        });
    }
    if limit < crate::format::volumes::MIN_SPLIT {
        return Err(ArchiveError::SplitSize {
            reason: format!(
                "{limit} bytes is less than the least volume, {} bytes",
                crate::format::volumes::MIN_SPLIT
            ),
        });
    }
    check_output(&crate::pack::split::volume_path(output, 1))?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_output(&output.with_file_name(crate::format::volumes::list_name(&name)))
}

/// The bundle's name is its top folder: one path component.
fn check_bundle_name(name: &str, output: &Path) -> Result<(), ArchiveError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(ArchiveError::Manifest {
            bundle: output.into(),
            reason: format!("invalid bundle name {name:?}"),
        });
    }
    Ok(())
}

/// Threads for hashing and compression: all cores unless the options say.
fn thread_count(options: &WriteOptions) -> usize {
    if options.threads == 0 {
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        options.threads
    }
}

/// Records per sort kept in memory ([`WriteOptions::memory_paths`]).
fn memory_budget(options: &WriteOptions) -> usize {
    match options.memory_paths {
        0 => spill::DEFAULT_BUDGET,
        n => n,
    }
}

/// One of airgap's own entries: its path below the top folder, what it is, its mode.
type OwnEntry = (&'static [u8], OutKind, u32);

/// airgap's own entries, sorted by path: `.airgap/`, the `unpack` launcher, and the
/// carried unpacker when there is one (canonical, so that pass 2 reads the file pass 1
/// hashed even if the name given is a link).
fn own_entries(options: &WriteOptions) -> Result<Vec<OwnEntry>, ArchiveError> {
    let mut own: Vec<OwnEntry> = vec![
        (b".airgap", OutKind::Dir, 0o755),
        (
            b"unpack",
            OutKind::File {
                content: Content::Memory(LAUNCHER.as_bytes()),
            },
            0o755,
        ),
    ];
    if let Some(unpacker) = &options.unpacker {
        let canonical =
            fs::canonicalize(unpacker).map_err(|e| ArchiveError::io("reading", unpacker, e))?;
        own.push((
            UNPACKER_PATH.as_bytes(),
            OutKind::File {
                content: Content::Disk(canonical),
            },
            0o755,
        ));
    }
    for (path, file) in &options.own_files {
        let canonical = fs::canonicalize(file).map_err(|e| ArchiveError::io("reading", file, e))?;
        own.push((
            path.as_bytes(),
            OutKind::File {
                content: Content::Disk(canonical),
            },
            0o644,
        ));
    }
    own.sort_by(|a, b| a.0.cmp(b.0));
    Ok(own)
}

/// One write of one bundle: what every phase reads.
struct Job<'a> {
    plan: &'a Plan,
    own: Vec<OwnEntry>,
    /// The top folder.
    name: String,
    output: &'a Path,
    options: &'a WriteOptions,
    threads: usize,
    budget: usize,
    progress: &'a dyn Progress,
}

/// The manifest's file list, written beside pass 1's hashes, and what pass 2 and the
/// summary need of that walk.
struct Listing {
    /// The manifest so far, in a scratch file beside the output (about 200 bytes a file):
    /// it must be complete before the first tar byte.
    spill: TempFile,
    /// The regular files it lists.
    files: ListedFiles,
    /// A delta's files taken from the base.
    reused: Option<ReusedFiles>,
}

/// What a delta leaves out: the files its base holds (their lines of `.airgap/delta.toml`,
/// with their output indexes, on a tape in archive order), and the changed files its base
/// has at the same path, which may go as patches.
struct ReusedFiles {
    lines: Tape,
    count: u64,
    bytes: u64,
    candidates: Vec<Candidate>,
}

/// A changed file the base has at the same path: a patch against it may be small.
struct Candidate {
    index: u64,
    path: Vec<u8>,
    source: PathBuf,
    size: u64,
    sha256: [u8; 32],
    base_sha256: [u8; 32],
    mtime: u64,
}

/// A file carried as a zstd patch against its base file.
struct Patched {
    index: u64,
    path: Vec<u8>,
    mtime: u64,
    size: u64,
    patch: File,
    len: u64,
}

/// [`ReusedFiles`] complete: the delta's entry, the patches, the indexes pass 2 skips.
struct ReusedDone {
    text: File,
    text_len: u64,
    patches: Vec<Patched>,
    indexes: File,
    indexes_len: u64,
    count: u64,
    bytes: u64,
}

/// One output index (a file pass 2 leaves out).
struct IndexAt(u64);

impl Record for IndexAt {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.0);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        Decoder::new(bytes).u64().map(IndexAt)
    }
}

/// A line of the list and the output index it stands for.
struct LineAt(u64, crate::format::delta::Reused);

impl Record for LineAt {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.0);
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let index = Decoder::new(bytes).u64()?;
        Ok(LineAt(
            index,
            crate::format::delta::Reused::decode(&bytes[8..])?,
        ))
    }
}

/// What the delta does with one listed file.
enum Reuse {
    /// Carried whole (and deduplicated as any file).
    Stored,
    /// Left to the base, or possibly patched: not deduplicated.
    LeftOut,
}

impl ReusedFiles {
    fn new() -> Result<ReusedFiles, ArchiveError> {
        Ok(ReusedFiles {
            lines: Tape::new().map_err(scratch_error)?,
            count: 0,
            bytes: 0,
            candidates: Vec::new(),
        })
    }

    fn add(&mut self, index: u64, r: crate::format::delta::Reused, size: u64) -> io::Result<()> {
        self.lines.push(&LineAt(index, r))?;
        self.count += 1;
        self.bytes += size;
        Ok(())
    }

    /// The delta's description (the reused and the patched files merged in archive
    /// order, then the metadata) and the indexes pass 2 skips.
    fn finish(self, job: &Job<'_>, patches: Vec<Patched>) -> Result<ReusedDone, ArchiveError> {
        use crate::format::delta::{write_reused, Reused};
        let base = job
            .options
            .delta
            .as_ref()
            .ok_or_else(|| internal("a delta without a base"))?;
        let patched_bytes: u64 = patches.iter().map(|p| p.size).sum();
        let meta = crate::format::delta::DeltaMeta {
            format: crate::format::delta::DELTA_FORMAT,
            base: base.identity.clone(),
            base_name: base.name.clone(),
            reused: self.count + patches.len() as u64,
            reused_bytes: self.bytes + patched_bytes,
        };
        let mut text = io::BufWriter::new(tempfile::tempfile().map_err(scratch_error)?);
        let mut indexes = Tape::new().map_err(scratch_error)?;
        let mut line = String::new();
        crate::format::delta::begin(&mut line);
        let (file, _) = self.lines.finish().map_err(scratch_error)?;
        let end = file.metadata().map_err(scratch_error)?.len();
        let mut lines = TapeReader::<LineAt>::new(&file, 0, end);
        let mut next_line = lines.next_record().map_err(scratch_error)?;
        let mut patch_iter = patches.iter().peekable();
        loop {
            let take_patch = match (&next_line, patch_iter.peek()) {
                (None, None) => break,
                (Some(l), Some(p)) => p.index < l.0,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let (index, r) = if take_patch {
                let p = patch_iter.next().ok_or_else(|| internal("no patch"))?;
                let r = Reused {
                    path: p.path.clone(),
                    from: p.path.clone(),
                    mtime: p.mtime,
                    patch: true,
                };
                (p.index, r)
            } else {
                let l = next_line.take().ok_or_else(|| internal("no line"))?;
                next_line = lines.next_record().map_err(scratch_error)?;
                (l.0, l.1)
            };
            write_reused(&mut line, &r);
            text.write_all(line.as_bytes()).map_err(scratch_error)?;
            line.clear();
            indexes.push(&IndexAt(index)).map_err(scratch_error)?;
        }
        crate::format::delta::end(&mut line, &meta).map_err(|reason| ArchiveError::Manifest {
            bundle: job.output.into(),
            reason,
        })?;
        text.write_all(line.as_bytes()).map_err(scratch_error)?;
        let mut text = text
            .into_inner()
            .map_err(|e| scratch_error(e.into_error()))?;
        let text_len = text.seek(SeekFrom::End(0)).map_err(scratch_error)?;
        text.seek(SeekFrom::Start(0)).map_err(scratch_error)?;
        let (indexes, _) = indexes.finish().map_err(scratch_error)?;
        let indexes_len = indexes.metadata().map_err(scratch_error)?.len();
        Ok(ReusedDone {
            text,
            text_len,
            patches,
            indexes,
            indexes_len,
            count: meta.reused,
            bytes: meta.reused_bytes,
        })
    }
}

/// What the manifest's walk keeps of the regular files.
struct ListedFiles {
    /// Pass 1's hashes in archive order, for pass 2 to check against.
    hashes: Tape,
    /// Every file by (content, mode, mtime), to find duplicates.
    dedup: Sorter<DedupKey>,
    /// How many.
    count: u64,
    /// Their total size.
    bytes: u64,
    /// The carried unpacker's sha256 as the manifest lists it: a `.run`'s header runs a
    /// copy that must be the same bytes.
    unpacker_sha256: Option<[u8; 32]>,
}

impl ListedFiles {
    /// A regular file as listed: counted, queued for the duplicate sort unless a delta
    /// leaves it out (`stored`), its hash kept for pass 2.
    fn add(&mut self, out: &Out, h: HashedAt, stored: bool) -> Result<(), ArchiveError> {
        if out.path == UNPACKER_PATH.as_bytes() {
            self.unpacker_sha256 = Some(h.hashed.sha256);
        }
        self.count += 1;
        self.bytes += h.hashed.size;
        if stored {
            self.dedup
                .push(DedupKey {
                    sha256: h.hashed.sha256,
                    mode: out.mode(),
                    mtime: out.mtime(),
                    index: h.index,
                    path: out.path.clone(),
                })
                .map_err(scratch_error)?;
        }
        self.hashes.push(&h).map_err(scratch_error)
    }
}

impl Job<'_> {
    /// Every output entry in archive order, airgap's own among the plan's.
    fn outputs(&self) -> Outputs<'_> {
        Outputs::new(self.plan, &self.own)
    }

    /// Pass 1: hash every distinct source once (by inode), in parallel; the results in
    /// archive order.
    fn hash_pass(&self) -> Result<Sorter<HashedAt>, ArchiveError> {
        let (jobs, mut hashed, total_bytes) = self.queue_hashes()?;
        self.progress.begin("hashing", total_bytes, Unit::Bytes);
        let result = hash_jobs(jobs, &mut hashed, self.threads, self.progress);
        self.progress.end();
        result?;
        Ok(hashed)
    }

    /// Pass 1's work list: a job per file on disk (by inode, so that hard links are read
    /// once), and at once the hash of what airgap writes from memory. Also the bytes to
    /// read, for the progress bar.
    fn queue_hashes(&self) -> Result<(Sorter<HashJob>, Sorter<HashedAt>, u64), ArchiveError> {
        let mut jobs = Sorter::<HashJob>::new(self.budget);
        let mut hashed = Sorter::<HashedAt>::new(self.budget);
        let mut total_bytes = 0u64;
        for (index, out) in self.outputs().enumerate() {
            let out = out?;
            let index = index as u64;
            match (&out.src, out.kind()) {
                (_, KindRef::File(ContentRef::Memory(bytes))) => {
                    total_bytes += bytes.len() as u64;
                    hashed
                        .push(HashedAt {
                            index,
                            hashed: Hashed {
                                size: bytes.len() as u64,
                                sha256: Sha256::digest(bytes).into(),
                                sparse: None,
                            },
                        })
                        .map_err(scratch_error)?;
                }
                (src, KindRef::File(ContentRef::Disk(source))) => {
                    let id = match src {
                        Src::Plan(item) => {
                            if let ItemKind::File { size, .. } = &item.kind {
                                total_bytes += size;
                            }
                            item.id
                        }
                        Src::Own(..) => None,
                    };
                    jobs.push(HashJob {
                        id: id.unwrap_or((u64::MAX, index)),
                        index,
                        source: source.into_owned(),
                    })
                    .map_err(scratch_error)?;
                }
                _ => {}
            }
        }
        Ok((jobs, hashed, total_bytes))
    }

    /// The manifest's file list, from a second walk of the plan beside the hashes; each
    /// regular file also goes to the tape pass 2 checks against and to the duplicate sort.
    fn list_files(&self, hashed: Sorter<HashedAt>) -> Result<Listing, ArchiveError> {
        let spill_name = PathBuf::from(format!("{}.manifest", self.output.display()));
        let spill = TempFile::new(&spill_name)?;
        let mut files = ListedFiles {
            hashes: Tape::new().map_err(scratch_error)?,
            dedup: Sorter::<DedupKey>::new(self.budget),
            count: 0,
            bytes: 0,
            unpacker_sha256: None,
        };
        let mut reused = match self.options.delta {
            Some(_) => Some(ReusedFiles::new()?),
            None => None,
        };
        let spill_err = |e: io::Error| ArchiveError::io("writing", &spill.path, e);
        let mut spill_out = io::BufWriter::with_capacity(256 * 1024, &spill.file);
        let mut line = String::with_capacity(512);
        begin_files(&mut line);
        spill_out.write_all(line.as_bytes()).map_err(spill_err)?;
        let mut hashed = hashed.finish().map_err(scratch_error)?;
        for (index, out) in self.outputs().enumerate() {
            let out = out?;
            let index = index as u64;
            let hash = match out.kind() {
                KindRef::File(_) => Some(
                    hashed
                        .next_record()
                        .map_err(scratch_error)?
                        .filter(|h| h.index == index)
                        .ok_or_else(|| internal("a file has no hash"))?,
                ),
                _ => None,
            };
            line.clear();
            write_record(
                &mut line,
                &file_record(&out, hash.as_ref().map(|h| &h.hashed)),
            );
            if let Some(h) = hash {
                let how = match (&self.options.delta, &mut reused) {
                    (Some(base), Some(reused)) => self.reuse(base, reused, &out, &h)?,
                    _ => Reuse::Stored,
                };
                files.add(&out, h, matches!(how, Reuse::Stored))?;
            }
            spill_out.write_all(line.as_bytes()).map_err(spill_err)?;
        }
        spill_out.flush().map_err(spill_err)?;
        drop(spill_out);
        Ok(Listing {
            spill,
            files,
            reused,
        })
    }

    /// A delta leaves a plugin's file out when its base holds the same content, and keeps
    /// a changed one that its base has at the same path aside as a patch candidate
    /// (airgap's own entries always go in: `NAME/unpack` must run from an extracted delta).
    fn reuse(
        &self,
        base: &crate::pack::delta::DeltaBase,
        reused: &mut ReusedFiles,
        out: &Out,
        h: &HashedAt,
    ) -> Result<Reuse, ArchiveError> {
        if !matches!(out.src, Src::Plan(_)) {
            return Ok(Reuse::Stored);
        }
        use crate::pack::delta::InBase;
        let base_sha256 = match base.lookup(&out.path, &h.hashed.sha256, h.hashed.size)? {
            InBase::Same(from) => {
                let r = crate::format::delta::Reused {
                    path: out.path.clone(),
                    from,
                    mtime: out.mtime(),
                    patch: false,
                };
                reused
                    .add(h.index, r, h.hashed.size)
                    .map_err(scratch_error)?;
                return Ok(Reuse::LeftOut);
            }
            InBase::Patchable(base_sha256) => base_sha256,
            InBase::Absent => return Ok(Reuse::Stored),
        };
        let sparse = h.hashed.sparse.is_some();
        let source = match out.kind() {
            KindRef::File(ContentRef::Disk(source)) if !sparse => source.into_owned(),
            _ => return Ok(Reuse::Stored),
        };
        reused.candidates.push(Candidate {
            index: h.index,
            path: out.path.clone(),
            source,
            size: h.hashed.size,
            sha256: h.hashed.sha256,
            base_sha256,
            mtime: out.mtime(),
        });
        Ok(Reuse::LeftOut)
    }

    /// The changed files a patch against the base's content carries in under a quarter of
    /// their size (`zstd --patch-from`); the others are written whole.
    fn make_patches(&self, candidates: Vec<Candidate>) -> Result<Vec<Patched>, ArchiveError> {
        let references = match (&self.options.delta, candidates.is_empty()) {
            (Some(base), false) => base.references.clone(),
            _ => None,
        };
        let Some(references) = references else {
            return Ok(Vec::new());
        };
        let paths: Vec<Vec<u8>> = candidates.iter().map(|c| c.path.clone()).collect();
        let dir = references.fetch(&paths, self.progress)?;
        let total = candidates.iter().map(|c| c.size).sum();
        self.progress.begin("patching", total, Unit::Bytes);
        let mut patches = Vec::new();
        for c in candidates {
            if self.progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            if let Some(p) = patch_one(&c, &dir.join(std::ffi::OsStr::from_bytes(&c.path)))? {
                patches.push(p);
            }
            self.progress.advance(c.size);
        }
        self.progress.end();
        Ok(patches)
    }

    /// Duplicates: sorted by (content, mode, mtime, index), each group's first is stored
    /// and the others link to it. Returns the links in archive order and their number.
    fn find_duplicates(
        &self,
        dedup: Sorter<DedupKey>,
    ) -> Result<(Merge<LinkAt>, u64), ArchiveError> {
        let mut links = Sorter::<LinkAt>::new(self.budget);
        let mut deduplicated = 0u64;
        let mut dedup = dedup.finish().map_err(scratch_error)?;
        while let Some(first) = dedup.next_record().map_err(scratch_error)? {
            let same = |k: &DedupKey| {
                k.sha256 == first.sha256 && k.mode == first.mode && k.mtime == first.mtime
            };
            while let Some(later) = dedup.next_if(same).map_err(scratch_error)? {
                deduplicated += 1;
                links
                    .push(LinkAt {
                        index: later.index,
                        target: first.path.clone(),
                    })
                    .map_err(scratch_error)?;
            }
        }
        Ok((links.finish().map_err(scratch_error)?, deduplicated))
    }

    /// The manifest's end: everything but the file list (`end_files` puts it after the
    /// list, where a streaming reader finds it), then the size check and a rewind for
    /// pass 2. Returns the manifest's length.
    fn finish_manifest(&self, spill: &TempFile, input: ManifestInput) -> Result<u64, ArchiveError> {
        let spill_err = |e: io::Error| ArchiveError::io("writing", &spill.path, e);
        let manifest = Manifest {
            format: FORMAT,
            bundle_name: self.name.clone(),
            airgap_version: input.airgap_version,
            plugins: input.plugins,
            target: input.target,
            python: input.python,
            warnings: input.warnings,
            packages: input.packages,
            install_steps: input.install_steps,
            files: Vec::new(),
        };
        let meta = manifest
            .meta_toml()
            .map_err(|reason| ArchiveError::Manifest {
                bundle: self.output.into(),
                reason,
            })?;
        let mut line = String::new();
        end_files(&mut line, &meta);
        (&spill.file)
            .write_all(line.as_bytes())
            .map_err(spill_err)?;
        let manifest_len = (&spill.file).seek(SeekFrom::End(0)).map_err(spill_err)?;
        if manifest_len > crate::format::manifest::MAX_MANIFEST {
            return Err(ArchiveError::ManifestTooLarge {
                bundle: self.output.into(),
                size: manifest_len,
                max: crate::format::manifest::MAX_MANIFEST,
            });
        }
        (&spill.file).seek(SeekFrom::Start(0)).map_err(spill_err)?;
        Ok(manifest_len)
    }

    /// Pass 2: the archive into `temp` (after a `.run`'s prefix), through the filter and
    /// the compressor. Returns the file's size and sha256.
    fn archive_pass(
        &self,
        temp: Dest,
        (manifest, reused): ((&File, u64), Option<&ReusedDone>),
        hashes: &File,
        links: Merge<LinkAt>,
        unpacker_sha256: Option<[u8; 32]>,
        bytes_in: u64,
    ) -> Result<Finished, ArchiveError> {
        let hashes_len = hashes.metadata().map_err(scratch_error)?.len();
        let temp_path = temp.path().to_path_buf();
        let mut sink = self.open_sink(temp, unpacker_sha256)?;
        self.progress.begin("writing", bytes_in, Unit::Bytes);
        let result = write_tar(
            &mut *sink,
            &self.name,
            (manifest, reused),
            self.outputs(),
            TapeReader::new(hashes, 0, hashes_len),
            links,
            self.progress,
        )
        .and_then(|()| {
            sink.finish_sink()
                .map_err(|e| ArchiveError::io("writing", &temp_path, e))
        });
        self.progress.end();
        result
    }

    /// The way from the tar stream to `temp`: the `.run` prefix first when asked (outside
    /// the filter: the sh header must stay readable), then the filter (encryption), then
    /// the compressor.
    fn open_sink(
        &self,
        temp: Dest,
        unpacker_sha256: Option<[u8; 32]>,
    ) -> Result<Box<dyn Sink>, ArchiveError> {
        let options = self.options;
        let temp_path = temp.path().to_path_buf();
        let mut counter = HashingWriter::new(temp);
        if options.self_extracting {
            let Dest::File(temp) = &counter.file else {
                return Err(internal("a self-extracting bundle in volumes"));
            };
            let temp = temp
                .file
                .try_clone()
                .map_err(|e| ArchiveError::io("writing", &temp_path, e))?;
            write_run_prefix(
                &mut counter,
                &self.name,
                options,
                unpacker_sha256,
                (&temp_path, &temp),
            )?;
        }
        let counter: Box<dyn FilteredOutput> = match &options.filter {
            Some(filter) => filter
                .wrap(counter)
                .map_err(|e| ArchiveError::io("writing", &temp_path, e))?,
            None => Box::new(counter),
        };
        Ok(match options.compression {
            Compression::Gzip { level } => {
                Box::new(ParallelGzip::new(counter, level.min(9), self.threads))
            }
            Compression::Zstd { level } => {
                zstd_sink(counter, level, self.threads, options.zstd_long)
                    .map_err(|e| ArchiveError::io("compressing", &temp_path, e))?
            }
        })
    }
}

/// The manifest's record of one entry; `hash` is pass 1's for a regular file.
fn file_record(out: &Out, hash: Option<&Hashed>) -> FileRecord {
    let (text, hex_form) = encode(&out.path);
    let mut rec = FileRecord {
        path: text,
        path_hex: hex_form,
        kind: FileType::Dir,
        size: 0,
        mode: out.mode(),
        sha256: None,
        plugin: out.plugin().to_string(),
        package: out.package().map(str::to_string),
        target: None,
        target_hex: None,
    };
    match (out.kind(), hash) {
        (KindRef::Symlink { target }, _) => {
            rec.kind = FileType::Symlink;
            let (t, th) = encode(target);
            rec.target = Some(t);
            rec.target_hex = th;
        }
        (KindRef::File(_), Some(h)) => {
            rec.kind = FileType::File;
            rec.size = h.size;
            rec.sha256 = Some(hex::encode(h.sha256));
        }
        _ => {}
    }
    rec
}

/// The output and its `.sha256` into place, each atomically: the bundle first, so that a
/// checksum never names a bundle that is not there. Returns the sha256 in hex.
fn commit_with_checksum(
    finished: Finished,
    output: &Path,
) -> Result<(String, Option<PathBuf>), ArchiveError> {
    let digest = finished.sha256;
    let sha256 = hex::encode(digest);
    let sum_line = format!(
        "{sha256}  {}\n",
        output
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let sha_path = PathBuf::from(format!("{}.sha256", output.display()));
    let sha_temp = TempFile::new(&sha_path)?;
    (&sha_temp.file)
        .write_all(sum_line.as_bytes())
        .map_err(|e| ArchiveError::io("writing", &sha_temp.path, e))?;
    match finished.dest {
        Dest::File(temp) => {
            temp.commit(output)?;
            sha_temp.commit(&sha_path)?;
            Ok((sha256, None))
        }
        Dest::Volumes(volumes) => {
            // The list is the last file in place: a reader that finds it finds every volume.
            sha_temp.commit(&sha_path)?;
            let list = volumes.commit(finished.len, digest)?;
            Ok((sha256, Some(list)))
        }
    }
}

/// What a self-extracting bundle needs, refused before any work: an unpacker to run, and
/// no encryption (the static unpacker has no crypto).
pub fn check_self_extracting(output: &Path, options: &WriteOptions) -> Result<(), ArchiveError> {
    if !options.self_extracting {
        return Ok(());
    }
    let refuse = |reason: &str, help: &str| ArchiveError::SelfExtracting {
        output: output.into(),
        reason: reason.into(),
        help: help.into(),
    };
    if options.filter.is_some() {
        return Err(refuse(
            "cannot be encrypted: the unpacker its sh header runs has no crypto",
            "drop --self-extracting (airgap unpack decrypts; or age -d, then sh NAME.run), or drop the encryption and sign the .run with --sign",
        ));
    }
    match &options.unpacker {
        Some(path) if path.is_file() => Ok(()),
        _ => Err(refuse(
            "needs the static unpacker, and there is none (none beside airgap, or --unpacker or AIRGAP_UNPACKER names no file)",
            "build it (cargo xtask build makes target/debug/airgap-unpack-static) or name it with --unpacker PATH or AIRGAP_UNPACKER",
        )),
    }
}

/// The sh header and the unpacker of a `.run`, zero-padded to the archive's block, through
/// the output's hasher (the `.sha256` and a signature cover the whole file); the `.run` is
/// made executable. The copy must be the bytes `listed` in the manifest (pass 1's hash of
/// the same file), so that an unpacker replaced during the run is an error here, not a
/// `.run` every reader refuses.
fn write_run_prefix(
    out: &mut HashingWriter,
    name: &str,
    options: &WriteOptions,
    listed: Option<[u8; 32]>,
    (temp_path, temp_file): (&Path, &File),
) -> Result<(), ArchiveError> {
    let Some(unpacker) = &options.unpacker else {
        return Err(internal("a self-extracting bundle without an unpacker"));
    };
    let mut src = File::open(unpacker).map_err(|e| ArchiveError::io("reading", unpacker, e))?;
    let size = src
        .metadata()
        .map_err(|e| ArchiveError::io("reading", unpacker, e))?
        .len();
    // The header holds the unpacker's cksum: a first read for it, a second to copy it,
    // which must give the same bytes.
    let sum = |src: &mut File| -> Result<u32, ArchiveError> {
        let rerr = |e| ArchiveError::io("reading", unpacker, e);
        src.seek(SeekFrom::Start(0)).map_err(rerr)?;
        let mut c = crate::format::selfx::Cksum::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut left = size;
        while left > 0 {
            let n = read_full(src, &mut buf[..left.min(READ_BUF as u64) as usize]).map_err(rerr)?;
            if n == 0 {
                return Err(ArchiveError::Changed {
                    path: unpacker.clone(),
                    what: "it became shorter while it was read".into(),
                });
            }
            c.update(&buf[..n]);
            left -= n as u64;
        }
        c.update(&vec![
            0u8;
            (size.div_ceil(crate::format::selfx::BLOCK) * crate::format::selfx::BLOCK - size)
                as usize
        ]);
        Ok(c.finish())
    };
    let cksum = sum(&mut src)?;
    let (header, layout) = crate::format::selfx::header(name, size, cksum);
    let werr = |e| ArchiveError::io("writing", temp_path, e);
    out.write_all(&header).map_err(werr)?;
    src.seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io("reading", unpacker, e))?;
    let mut copied = crate::format::selfx::Cksum::new();
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut left = size;
    while left > 0 {
        let n = read_full(&mut src, &mut buf[..left.min(READ_BUF as u64) as usize])
            .map_err(|e| ArchiveError::io("reading", unpacker, e))?;
        if n == 0 {
            break;
        }
        copied.update(&buf[..n]);
        sha.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(werr)?;
        left -= n as u64;
    }
    let pad = vec![0u8; (layout.archive_offset - layout.unpacker_offset - size) as usize];
    copied.update(&pad);
    let same_as_listed = listed.is_some_and(|h| h == <[u8; 32]>::from(sha.finalize()));
    if left != 0 || copied.finish() != cksum || !same_as_listed {
        return Err(ArchiveError::Changed {
            path: unpacker.clone(),
            what: "its bytes changed while the bundle was written".into(),
        });
    }
    out.write_all(&pad).map_err(werr)?;
    temp_file
        .set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(werr)?;
    Ok(())
}

/// Pass 1: hash the jobs, sorted by inode so that hard links are read once, on `threads`
/// threads; results go to `hashed` (which sorts them back into archive order).
fn hash_jobs(
    jobs: Sorter<HashJob>,
    hashed: &mut Sorter<HashedAt>,
    threads: usize,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let mut jobs = jobs.finish().map_err(scratch_error)?;
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<(PathBuf, Vec<u64>)>(threads * 4);
        let (done_tx, done_rx) = bounded::<(Vec<u64>, Result<Hashed, ArchiveError>)>(threads * 4);
        for _ in 0..threads.max(1) {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let stop = &stop;
            scope.spawn(move || {
                for (source, members) in job_rx {
                    let result = if stop.load(Ordering::Relaxed) || progress.is_cancelled() {
                        Err(ArchiveError::Cancelled)
                    } else {
                        hash_file(&source, progress)
                    };
                    if done_tx.send((members, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((job_rx, done_tx));
        let stop = &stop;
        let producer = scope.spawn(move || -> Result<(), ArchiveError> {
            while let Some(first) = jobs.next_record().map_err(scratch_error)? {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let mut members = vec![first.index];
                while let Some(same) = jobs.next_if(|j| j.id == first.id).map_err(scratch_error)? {
                    members.push(same.index);
                }
                if job_tx.send((first.source, members)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let mut failure: Option<ArchiveError> = None;
        for (members, result) in done_rx {
            if failure.is_some() {
                continue;
            }
            let pushed = result.and_then(|h| {
                for index in members {
                    hashed
                        .push(HashedAt {
                            index,
                            hashed: h.clone(),
                        })
                        .map_err(scratch_error)?;
                }
                Ok(())
            });
            if let Err(e) = pushed {
                stop.store(true, Ordering::Relaxed);
                failure = Some(e);
            }
        }
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(internal("the hashing thread panicked")));
        match failure {
            Some(e) => Err(e),
            None => produced,
        }
    })
}

/// zstd's level for patches: they are small, and made once.
#[cfg(feature = "zstd")]
const PATCH_LEVEL: i32 = 19;

/// A patch of `c` against `reference` (the base's content, checked against the base's
/// manifest), when it is under a quarter of the file's size.
#[cfg(feature = "zstd")]
fn patch_one(c: &Candidate, reference: &Path) -> Result<Option<Patched>, ArchiveError> {
    use zstd::zstd_safe::CParameter;
    let Ok(old) = fs::read(reference) else {
        return Ok(None);
    };
    if <[u8; 32]>::from(Sha256::digest(&old)) != c.base_sha256 {
        return Ok(None);
    }
    let new = fs::read(&c.source).map_err(|e| ArchiveError::io("reading", &c.source, e))?;
    if <[u8; 32]>::from(Sha256::digest(&new)) != c.sha256 {
        return Err(ArchiveError::Changed {
            path: c.source.clone(),
            what: "its content changed while the bundle was written".into(),
        });
    }
    let patch = (|| -> io::Result<Vec<u8>> {
        let mut enc = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), PATCH_LEVEL, &old)?;
        enc.set_parameter(CParameter::WindowLog(patch_window_log(
            old.len() + new.len(),
        )))?;
        enc.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
        enc.set_pledged_src_size(Some(new.len() as u64))?;
        enc.include_contentsize(true)?;
        enc.write_all(&new)?;
        enc.finish()
    })()
    .map_err(scratch_error)?;
    if patch.len() as u64 * 4 > c.size {
        return Ok(None);
    }
    let mut file = tempfile::tempfile().map_err(scratch_error)?;
    file.write_all(&patch).map_err(scratch_error)?;
    file.seek(SeekFrom::Start(0)).map_err(scratch_error)?;
    Ok(Some(Patched {
        index: c.index,
        path: c.path.clone(),
        mtime: c.mtime,
        size: c.size,
        patch: file,
        len: patch.len() as u64,
    }))
}

/// Without zstd, changed files are carried whole.
#[cfg(not(feature = "zstd"))]
fn patch_one(_: &Candidate, _: &Path) -> Result<Option<Patched>, ArchiveError> {
    Ok(None)
}

/// The window a patch needs: the reference and the file together (as `--patch-from`).
pub(crate) fn patch_window_log(bytes: usize) -> u32 {
    let mut log = 10;
    while log < 31 && (1usize << log) < bytes {
        log += 1;
    }
    log
}

/// Pass 2: the tar stream into `sink`: the manifest first (a reader learns what to expect
/// before any file), the top folder, every entry in archive order beside pass 1's hashes
/// and the duplicates' links, then the end marker.
fn write_tar(
    sink: &mut dyn Sink,
    name: &str,
    (manifest, reused): ((&File, u64), Option<&ReusedDone>),
    outs: Outputs<'_>,
    mut hashes: TapeReader<'_, HashedAt>,
    mut links: Merge<LinkAt>,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let mut tar = TarStream {
        sink,
        head: Vec::with_capacity(4096),
        buf: vec![0u8; READ_BUF],
    };
    tar.manifest(&in_top(name, MANIFEST_PATH.as_bytes()), manifest)?;
    // A delta's description comes second, so that a reader knows before any file that the
    // missing ones are the base's.
    let mut skip = reused.map(|r| TapeReader::<IndexAt>::new(&r.indexes, 0, r.indexes_len));
    let mut next_skip = None;
    if let Some(r) = reused {
        let path = in_top(name, crate::format::delta::DELTA_PATH.as_bytes());
        tar.manifest(&path, (&r.text, r.text_len))?;
        for p in &r.patches {
            let path = in_top(name, &crate::format::delta::patch_path(&p.path));
            tar.manifest(&path, (&p.patch, p.len))?;
        }
    }
    if let Some(skip) = &mut skip {
        next_skip = skip.next_record().map_err(scratch_error)?.map(|i| i.0);
    }
    tar.header(&Header {
        path: name.as_bytes(),
        kind: EntryType::Dir,
        mode: 0o755,
        size: 0,
        mtime: 0,
        link: b"",
        sparse: None,
    })?;
    for (index, out) in outs.enumerate() {
        let out = out?;
        let index = index as u64;
        if progress.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let path = in_top(name, &out.path);
        match out.kind() {
            KindRef::Dir => tar.header(&Header {
                path: &path,
                kind: EntryType::Dir,
                mode: out.mode(),
                size: 0,
                mtime: out.mtime(),
                link: b"",
                sparse: None,
            })?,
            KindRef::Symlink { target } => tar.header(&Header {
                path: &path,
                kind: EntryType::Symlink,
                mode: 0o777,
                size: 0,
                mtime: out.mtime(),
                link: target,
                sparse: None,
            })?,
            KindRef::File(content) => {
                let h = hashes
                    .next_record()
                    .map_err(scratch_error)?
                    .filter(|h| h.index == index)
                    .ok_or_else(|| internal("a file has no hash"))?
                    .hashed;
                if next_skip == Some(index) {
                    if let Some(skip) = &mut skip {
                        next_skip = skip.next_record().map_err(scratch_error)?.map(|i| i.0);
                    }
                    progress.advance(h.size);
                    continue;
                }
                let link = links.next_if(|l| l.index == index).map_err(scratch_error)?;
                match link {
                    Some(link) => {
                        tar.hard_link(&path, &out, &in_top(name, &link.target))?;
                        progress.advance(h.size);
                    }
                    None => tar.file(&path, &out, content, &h, progress)?,
                }
            }
        }
    }
    let written = tar.sink.tar_len();
    tarfmt::write_end(&mut SinkWriter(tar.sink), written).map_err(tar_error)?;
    Ok(())
}

/// `rel` below the top folder `name` (the top folder itself when `rel` is empty).
fn in_top(name: &str, rel: &[u8]) -> Vec<u8> {
    let mut p = name.as_bytes().to_vec();
    if !rel.is_empty() {
        p.push(b'/');
        p.extend_from_slice(rel);
    }
    p
}

/// An I/O error on the way to the archive.
fn tar_error(e: io::Error) -> ArchiveError {
    ArchiveError::io("writing", "the archive", e)
}

/// The tar stream on its way to the compressor, with the buffers its entries reuse.
struct TarStream<'a> {
    sink: &'a mut dyn Sink,
    /// The header blocks of one entry (long names, sparse maps), written at once.
    head: Vec<u8>,
    /// Read buffer for file data.
    buf: Vec<u8>,
}

impl TarStream<'_> {
    /// One entry's header blocks.
    fn header(&mut self, h: &Header<'_>) -> Result<(), ArchiveError> {
        self.head.clear();
        tarfmt::write_header(&mut self.head, h).map_err(tar_error)?;
        self.sink.write_all(&self.head).map_err(tar_error)
    }

    /// Zeros from the end of `len` bytes of data to the end of their block.
    fn pad(&mut self, len: u64) -> Result<(), ArchiveError> {
        let pad = tarfmt::padding(len) as usize;
        self.sink
            .write_all(&[0u8; tarfmt::BLOCK][..pad])
            .map_err(tar_error)
    }

    /// The manifest's entry (or a delta's description), copied from its scratch file.
    fn manifest(&mut self, path: &[u8], (file, len): (&File, u64)) -> Result<(), ArchiveError> {
        self.header(&Header {
            path,
            kind: EntryType::File,
            mode: 0o644,
            size: len,
            mtime: 0,
            link: b"",
            sparse: None,
        })?;
        let copied =
            io::copy(&mut file.take(len), &mut SinkWriter(self.sink)).map_err(tar_error)?;
        if copied != len {
            return Err(tar_error(io::Error::other(
                "the manifest scratch file was cut short",
            )));
        }
        self.pad(len)
    }

    /// A duplicate: a hard link to the first copy, at `target`.
    fn hard_link(&mut self, path: &[u8], out: &Out, target: &[u8]) -> Result<(), ArchiveError> {
        self.header(&Header {
            path,
            kind: EntryType::HardLink,
            mode: out.mode(),
            size: 0,
            mtime: out.mtime(),
            link: target,
            sparse: None,
        })
    }

    /// A regular file (an old-GNU sparse one when it has holes): its header, its data
    /// segments, checked against pass 1's hash `h` on the way, and the padding.
    fn file(
        &mut self,
        path: &[u8],
        out: &Out,
        content: ContentRef<'_>,
        h: &Hashed,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        let stored: u64 = match h.segments() {
            Some(segs) => segs.iter().map(|s| s.1).sum(),
            None => h.size,
        };
        self.header(&Header {
            path,
            kind: if h.sparse.is_some() {
                EntryType::Sparse
            } else {
                EntryType::File
            },
            mode: out.mode(),
            size: stored,
            mtime: out.mtime(),
            link: b"",
            sparse: h.segments().map(|s| (h.size, s)),
        })?;
        match content {
            ContentRef::Memory(bytes) => {
                self.sink.write_all(bytes).map_err(tar_error)?;
                progress.advance(h.size);
            }
            ContentRef::Disk(source) => copy_file(self.sink, &source, h, &mut self.buf, progress)?,
        }
        self.pad(stored)
    }
}

/// Stream a file's data segments into the sink, checking it still is what pass 1 hashed.
fn copy_file(
    sink: &mut dyn Sink,
    source: &Path,
    h: &Hashed,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    let mut f = File::open(source).map_err(|e| ArchiveError::io("reading", source, e))?;
    let meta = f
        .metadata()
        .map_err(|e| ArchiveError::io("reading", source, e))?;
    if meta.len() != h.size {
        return Err(ArchiveError::Changed {
            path: source.into(),
            what: format!("size was {} bytes, now {}", h.size, meta.len()),
        });
    }
    let whole = [(0u64, h.size)];
    let segments: &[(u64, u64)] = h.segments().unwrap_or(&whole);
    let mut hasher = Sha256::new();
    for &(off, len) in segments {
        if h.sparse.is_some() {
            f.seek(SeekFrom::Start(off))
                .map_err(|e| ArchiveError::io("reading", source, e))?;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            let got = read_full(&mut f, &mut buf[..n])
                .map_err(|e| ArchiveError::io("reading", source, e))?;
            if got < n {
                return Err(ArchiveError::Changed {
                    path: source.into(),
                    what: "it became shorter while being read".into(),
                });
            }
            hasher.update(&buf[..n]);
            sink.write_all(&buf[..n]).map_err(tar_error)?;
            left -= n as u64;
            progress.advance(n as u64);
            if progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
        }
    }
    let d: [u8; 32] = hasher.finalize().into();
    if d != *h.data_sha256() {
        return Err(ArchiveError::Changed {
            path: source.into(),
            what: "its content differs from when it was hashed".into(),
        });
    }
    if h.sparse.is_some() {
        let holes: u64 = h.size - segments.iter().map(|s| s.1).sum::<u64>();
        progress.advance(holes);
    }
    Ok(())
}

thread_local! {
    /// One read buffer per hashing thread, reused from file to file: a fresh one per file
    /// costs up to 64 zero-filled pages to fault in, 100,000 times.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Pass 1 for one file: its sha256 (holes count as zeros), its holes, and the sha256 of its
/// data segments.
fn hash_file(path: &Path, progress: &dyn Progress) -> Result<Hashed, ArchiveError> {
    READ_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < READ_BUF {
            buf.resize(READ_BUF, 0);
        }
        hash_file_with(path, progress, buf)
    })
}

fn hash_file_with(
    path: &Path,
    progress: &dyn Progress,
    buf: &mut [u8],
) -> Result<Hashed, ArchiveError> {
    let mut f = File::open(path).map_err(|e| ArchiveError::io("reading", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| ArchiveError::io("reading", path, e))?;
    let size = meta.len();
    let sparse = crate::sparse::data_segments(&f, &meta);
    f.seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io("reading", path, e))?;
    let mut whole = Sha256::new();
    let mut data = if sparse.is_some() {
        Some(Sha256::new())
    } else {
        None
    };
    let zeros = if sparse.is_some() {
        vec![0u8; READ_BUF]
    } else {
        Vec::new()
    };
    let mut pos = 0u64;
    let segments = sparse.clone().unwrap_or_else(|| vec![(0, u64::MAX)]);
    for (off, len) in segments {
        while pos < off {
            let n = (off - pos).min(zeros.len() as u64) as usize;
            whole.update(&zeros[..n]);
            pos += n as u64;
            progress.advance(n as u64);
        }
        if sparse.is_some() {
            f.seek(SeekFrom::Start(off))
                .map_err(|e| ArchiveError::io("reading", path, e))?;
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            let got = read_full(&mut f, &mut buf[..n])
                .map_err(|e| ArchiveError::io("reading", path, e))?;
            whole.update(&buf[..got]);
            if let Some(d) = data.as_mut() {
                d.update(&buf[..got]);
            }
            pos += got as u64;
            left -= got as u64;
            progress.advance(got as u64);
            if got < n {
                break;
            }
        }
    }
    if pos != size {
        return Err(ArchiveError::Changed {
            path: path.into(),
            what: format!("{size} bytes when opened, {pos} bytes read"),
        });
    }
    let sha256: [u8; 32] = whole.finalize().into();
    let sparse = match (sparse, data) {
        (Some(segments), Some(d)) => Some(Box::new(Sparse {
            segments,
            data_sha256: d.finalize().into(),
        })),
        _ => None,
    };
    Ok(Hashed {
        size,
        sha256,
        sparse,
    })
}

/// A compressed output that also counts the tar bytes fed to it.
trait Sink: Write {
    /// Uncompressed bytes written so far.
    fn tar_len(&self) -> u64;
    /// Flush everything; returns the archive's size and sha256, and its files.
    fn finish_sink(&mut self) -> io::Result<Finished>;
}

struct SinkWriter<'a>(&'a mut dyn Sink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Where the archive's bytes land: one temporary file, or volumes.
enum Dest {
    File(TempFile),
    Volumes(VolumeWriter),
}

impl Dest {
    fn path(&self) -> &Path {
        match self {
            Dest::File(t) => &t.path,
            Dest::Volumes(v) => v.current_path(),
        }
    }
}

/// The archive as written, not yet in place: its size, its sha256 and its files.
struct Finished {
    len: u64,
    sha256: [u8; 32],
    dest: Dest,
}

/// The output: counts and hashes what goes to it (the whole, also when it is split into
/// volumes).
pub struct HashingWriter {
    file: Dest,
    len: u64,
    hasher: Sha256,
}

impl HashingWriter {
    fn new(file: Dest) -> Self {
        HashingWriter {
            file,
            len: 0,
            hasher: Sha256::new(),
        }
    }

    /// Flush and sync; the size, the sha256 and the files.
    fn finish(mut self) -> io::Result<Finished> {
        self.flush()?;
        if let Dest::File(t) = &self.file {
            t.file.sync_all()?;
        }
        Ok(Finished {
            len: self.len,
            sha256: self.hasher.finalize().into(),
            dest: self.file,
        })
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match &mut self.file {
            Dest::File(t) => (&t.file).write(buf)?,
            Dest::Volumes(v) => v.write(buf)?,
        };
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Dest::File(t) => (&t.file).flush(),
            Dest::Volumes(v) => v.flush(),
        }
    }
}

/// The thread that writes compressed blocks in order; returns what it wrote.
type OutputThread = thread::JoinHandle<io::Result<Finished>>;

/// gzip members of [`GZIP_BLOCK`] bytes, compressed by a pool of threads and written in
/// order by another: constant memory (a bounded number of blocks in flight), every core busy,
/// and the output depends only on the input (not on timing or the number of threads).
struct ParallelGzip {
    current: Vec<u8>,
    seq: u64,
    tar_len: u64,
    jobs: Option<Sender<(u64, Vec<u8>)>>,
    workers: Vec<thread::JoinHandle<()>>,
    writer: Option<OutputThread>,
    spare: Receiver<Vec<u8>>,
}

impl ParallelGzip {
    fn new(out: Box<dyn FilteredOutput>, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let (job_tx, job_rx) = bounded::<(u64, Vec<u8>)>(threads);
        let (done_tx, done_rx) = bounded::<(u64, Vec<u8>)>(threads);
        let (spare_tx, spare_rx) = bounded::<Vec<u8>>(threads * 2 + 2);
        let mut workers = Vec::new();
        for _ in 0..threads {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let spare_tx = spare_tx.clone();
            workers.push(thread::spawn(move || {
                let mut compressor = MemberCompressor::new(level);
                while let Ok((seq, block)) = job_rx.recv() {
                    let compressed = compressor.member(&block);
                    let mut block = block;
                    block.clear();
                    let _ = spare_tx.try_send(block);
                    if done_tx.send((seq, compressed)).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(done_tx);
        let writer = thread::spawn(move || -> io::Result<Finished> {
            let mut out = out;
            let mut next = 0u64;
            let mut waiting: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            while let Ok((seq, data)) = done_rx.recv() {
                waiting.insert(seq, data);
                while let Some(data) = waiting.remove(&next) {
                    out.write_all(&data)?;
                    next += 1;
                }
            }
            if !waiting.is_empty() {
                return Err(io::Error::other("a compression thread stopped"));
            }
            out.finish()?.finish()
        });
        ParallelGzip {
            current: Vec::with_capacity(GZIP_BLOCK),
            seq: 0,
            tar_len: 0,
            jobs: Some(job_tx),
            workers,
            writer: Some(writer),
            spare: spare_rx,
        }
    }

    fn send_block(&mut self) -> io::Result<()> {
        let fresh = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(GZIP_BLOCK));
        let block = std::mem::replace(&mut self.current, fresh);
        let seq = self.seq;
        self.seq += 1;
        let sent = self
            .jobs
            .as_ref()
            .map(|j| j.send((seq, block)).is_ok())
            .unwrap_or(false);
        if sent {
            Ok(())
        } else {
            // The writer failed: collect its error.
            match self.stop() {
                Err(e) => Err(e),
                Ok(_) => Err(io::Error::other("the compression threads stopped")),
            }
        }
    }

    fn stop(&mut self) -> io::Result<Finished> {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take() {
            Some(w) => w
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the output thread panicked"))),
            None => Err(io::Error::other("the archive was already finished")),
        }
    }
}

impl Write for ParallelGzip {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.current.len();
        let n = room.min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        self.tar_len += n as u64;
        if self.current.len() == GZIP_BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for ParallelGzip {
    fn tar_len(&self) -> u64 {
        self.tar_len
    }
    fn finish_sink(&mut self) -> io::Result<Finished> {
        if !self.current.is_empty() || self.seq == 0 {
            self.send_block()?;
        }
        self.stop()
    }
}

impl Drop for ParallelGzip {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

/// Input of one zstd worker's job (see [`zstd_sink`]).
#[cfg(feature = "zstd")]
const ZSTD_JOB_SIZE: u32 = 2 << 20;
/// How much of the previous job each job sees again: 2^(8-9) of the window, half of it.
#[cfg(feature = "zstd")]
const ZSTD_OVERLAP_LOG: u32 = 8;

#[cfg(feature = "zstd")]
struct ZstdSink {
    enc: Option<zstd::stream::write::Encoder<'static, Box<dyn FilteredOutput>>>,
    tar_len: u64,
}

#[cfg(feature = "zstd")]
fn zstd_sink(
    out: Box<dyn FilteredOutput>,
    level: i32,
    threads: usize,
    long: bool,
) -> io::Result<Box<dyn Sink>> {
    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
    enc.include_checksum(true)?;
    if long {
        enc.long_distance_matching(true)?;
        enc.window_log(27)?;
    }
    // Always the multithreaded mode, one worker at least: its output does not depend on the
    // number of workers, while the single-threaded mode's frames differ from it, and a bundle
    // must not change with the machine's cores.
    enc.multithread(threads.max(1) as u32)?;
    if !long {
        // The library's default job (4 windows, 8 MiB at level 3) keeps about seven jobs of
        // input and output in flight: 60 MiB on 2 cores. 2 MiB jobs that each see half a
        // window of the previous one cost 40 MiB less for the same size (+0.02% on the
        // bench tree; docs/performance.md).
        enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
        enc.set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
            ZSTD_OVERLAP_LOG,
        ))?;
    }
    Ok(Box::new(ZstdSink {
        enc: Some(enc),
        tar_len: 0,
    }))
}

#[cfg(not(feature = "zstd"))]
fn zstd_sink(
    _out: Box<dyn FilteredOutput>,
    _level: i32,
    _threads: usize,
    _long: bool,
) -> io::Result<Box<dyn Sink>> {
    Err(io::Error::other("this build of airgap has no zstd support"))
}

#[cfg(feature = "zstd")]
impl Write for ZstdSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let enc = self
            .enc
            .as_mut()
            .ok_or_else(|| io::Error::other("finished"))?;
        let n = enc.write(buf)?;
        self.tar_len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "zstd")]
impl Sink for ZstdSink {
    fn tar_len(&self) -> u64 {
        self.tar_len
    }
    fn finish_sink(&mut self) -> io::Result<Finished> {
        let enc = self
            .enc
            .take()
            .ok_or_else(|| io::Error::other("finished"))?;
        enc.finish()?.finish()?.finish()
    }
}
