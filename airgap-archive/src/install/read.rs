//! Reading a bundle back: decompression in its own thread, and the one checker that both
//! `verify` and `unpack` use, so that what verify accepts is exactly what unpack installs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender};
use filetime::FileTime;
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::format::delta::{Delta, Reused};
use crate::format::gzmember;
use crate::format::manifest::records::{scratch_error, Records};
use crate::format::manifest::{
    check_rel, check_top, read_first_entry, FileRecord, FileType, Manifest, StreamedManifest,
    MANIFEST_PATH, MAX_FILE_SIZE,
};
use crate::format::tarfmt::{EntryType, TarEntry, TarReader};
use crate::install::hashing::{Expected, Hashers, BUF};
pub use crate::install::source::{BundleFile, BundleReader};
use crate::progress::{Progress, Unit};
use crate::spill;

const CHUNK: usize = 256 * 1024;

/// Whether a block is a tar header: ustar (POSIX or GNU) magic at offset 257.
fn is_tar_header(block: &[u8]) -> bool {
    block.get(257..262) == Some(b"ustar".as_slice())
}

/// The decompressed tar stream of a bundle, produced by a thread so that decompression and
/// checking run on two cores.
pub struct Stream {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Read buffers go back to the decompression thread: a fresh 1 MiB buffer each time
    /// costs its page faults (the CLI maps every large buffer on its own).
    recycle: Option<Sender<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    handle: Option<thread::JoinHandle<io::Result<()>>>,
    done: bool,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    if let Some(r) = &self.recycle {
                        let _ = r.try_send(used);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Stream {
    /// Read to the end, checking the compression trailers.
    pub fn finish(mut self) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the end of the archive",
                ));
            }
        }
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the decompression thread panicked"))),
            None => Err(io::Error::other("already finished")),
        }
    }
}

/// Opens the plaintext of an encrypted (age) bundle, so that this crate needs no crypto: the
/// CLI passes one from `airgap-seal` to the readers of a file it opened (`verify_opened`,
/// `unpack_opened`, `open_manifest_opened`) when it was given a key or a passphrase; nothing
/// is registered process-wide. Without one, an encrypted bundle is refused with
/// [`ArchiveError::Encrypted`].
pub trait Decryptor: Send + Sync {
    /// The decrypted stream of `file` (positioned at its start). Errors while reading it
    /// (tampering) come back as `io::Error`s of kind `InvalidData`.
    fn open(
        &self,
        bundle: &Path,
        file: Box<dyn Read + Send>,
    ) -> Result<Box<dyn Read + Send>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Whether these first bytes of a file are an age header (binary or armored).
pub fn is_age(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    head.starts_with(b"age-encryption.org/")
        || head[start..].starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// Open a bundle file once, for every later read: the signature check, the detached
/// checksum, decryption and extraction all go through this descriptor (and its duplicates,
/// which share the open file), so that a file renamed over the path after the signature
/// was checked is never read. Refuses anything but a regular file without blocking: a fifo
/// would hang the open, and could not be read twice anyway. A split bundle's first volume
/// (`NAME.tar.gz.001`) or list (`NAME.tar.gz.volumes`) opens every volume
/// ([`crate::install::source`]).
pub fn open_bundle(bundle: &Path) -> Result<BundleFile, ArchiveError> {
    if let Some(set) = crate::install::source::open_volumes(bundle)? {
        return Ok(set);
    }
    crate::install::source::open_regular(bundle).map(BundleFile::from_file)
}

/// Read the manifest of a bundle archive (or of an unpacked bundle directory), its records
/// in memory: for small manifests and tests; readers use [`open_manifest`].
pub fn read_manifest(bundle: &Path) -> Result<Manifest, ArchiveError> {
    open_manifest(bundle)?.into_manifest()
}

/// The manifest of a bundle archive or of an unpacked bundle directory, streamed.
pub fn open_manifest(bundle: &Path) -> Result<StreamedManifest, ArchiveError> {
    if bundle.is_dir() {
        return open_manifest_in(bundle);
    }
    let file = open_bundle(bundle)?;
    open_manifest_opened(bundle, &file, None)
}

/// What [`open_manifest_any`] read a manifest from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFrom {
    /// An extracted bundle or an installed tree (its `.airgap/manifest.toml`).
    Tree,
    /// A bundle file (or a split bundle's first volume or list).
    Bundle,
    /// A manifest file alone.
    ManifestFile,
}

/// The manifest of a previous version, however it is at hand: a bundle file, an extracted
/// bundle or an installed tree (its `.airgap/manifest.toml`), or a manifest file itself;
/// and which of these it was.
pub fn open_manifest_any(path: &Path) -> Result<(StreamedManifest, ManifestFrom), ArchiveError> {
    if path.is_dir() {
        return Ok((open_manifest_in(path)?, ManifestFrom::Tree));
    }
    let file = open_bundle(path)?;
    let mut head = [0u8; 128];
    let n = airgap_io::read_full(&mut reader_from_start(path, &file)?, &mut head)
        .map_err(|e| ArchiveError::io("reading", path, e))?;
    if let Some(one) = file
        .as_file()
        .filter(|_| crate::format::manifest::looks_like_manifest(&head[..n]))
    {
        let size = one
            .metadata()
            .map_err(|e| ArchiveError::io("reading", path, e))?
            .len();
        if size > crate::format::manifest::MAX_MANIFEST {
            return Err(ArchiveError::ManifestTooLarge {
                bundle: path.into(),
                size,
                max: crate::format::manifest::MAX_MANIFEST,
            });
        }
        let mut input = reader_from_start(path, &file)?;
        let manifest = crate::format::manifest::stream_from(path, &mut input, &|e| {
            ArchiveError::io("reading", path, e)
        })?;
        return Ok((manifest, ManifestFrom::ManifestFile));
    }
    Ok((
        open_manifest_opened(path, &file, None)?,
        ManifestFrom::Bundle,
    ))
}

/// [`read_manifest`] of a bundle file over a descriptor from [`open_bundle`].
pub fn read_manifest_opened(
    bundle: &Path,
    file: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
) -> Result<Manifest, ArchiveError> {
    open_manifest_opened(bundle, file, decryptor)?.into_manifest()
}

/// [`open_manifest`] of a bundle file over a descriptor from [`open_bundle`]:
/// only the first entry is read.
pub fn open_manifest_opened(
    bundle: &Path,
    file: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
) -> Result<StreamedManifest, ArchiveError> {
    let reader = open_archive_file(bundle, file, decryptor)?;
    let mut tar = TarReader::new(reader);
    let (top, m) = read_first_entry(bundle, &mut tar)?;
    check_top(bundle, &m.meta, &top)?;
    Ok(m)
}

/// A reader of `file` from its start, through its own duplicate of the descriptor (or its
/// own position in a split bundle's volumes).
pub fn reader_from_start(bundle: &Path, file: &BundleFile) -> Result<BundleReader, ArchiveError> {
    file.reader(bundle)
}

/// Open a bundle (gzip, zstd or plain tar, recognised by their magic bytes); an encrypted
/// one is refused: [`open_archive_file`] takes a decryptor.
pub fn open_archive(bundle: &Path) -> Result<Stream, ArchiveError> {
    let file = open_bundle(bundle)?;
    open_archive_file(bundle, &file, None)
}

/// [`open_archive`] over a descriptor from [`open_bundle`], age-encrypted bundles through
/// `decryptor`.
pub fn open_archive_file(
    bundle: &Path,
    opened: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
) -> Result<Stream, ArchiveError> {
    open_archive_layout(bundle, opened, decryptor).map(|(stream, _)| stream)
}

/// The layout of a self-extracting bundle ([`crate::format::selfx`]) from the header at the start
/// of `file`, or `None` when the file is no `.run`.
pub fn run_layout(
    bundle: &Path,
    file: &BundleFile,
) -> Result<Option<crate::format::selfx::Layout>, ArchiveError> {
    let mut file = reader_from_start(bundle, file)?;
    let mut head = vec![0u8; crate::format::selfx::MAX_HEADER as usize];
    let n = airgap_io::read_full(&mut file, &mut head)
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    if !crate::format::selfx::is_run(&head[..n]) {
        return Ok(None);
    }
    crate::format::selfx::parse(&head[..n])
        .map(Some)
        .map_err(|reason| ArchiveError::Corrupt {
            bundle: bundle.into(),
            reason: format!("a self-extracting bundle, but {reason}"),
        })
}

/// [`open_archive_file`], and the layout when the file is a self-extracting bundle: its
/// archive is read in place, from its offset inside the `.run` file.
fn open_archive_layout(
    bundle: &Path,
    opened: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
) -> Result<(Stream, Option<crate::format::selfx::Layout>), ArchiveError> {
    let layout = run_layout(bundle, opened)?;
    let (file, kind) = open_archive_bytes(bundle, opened, layout.as_ref(), decryptor)?;
    Ok((Stream::spawn(kind, file), layout))
}

/// How the archive inside a bundle file is compressed, told by its first bytes.
enum Kind {
    Gzip,
    Zstd,
    Plain,
}

/// The archive's bytes (after a `.run`'s header, decrypted when age-encrypted) and how they
/// are compressed; a file that is none of these is refused before a thread starts.
fn open_archive_bytes(
    bundle: &Path,
    opened: &BundleFile,
    layout: Option<&crate::format::selfx::Layout>,
    decryptor: Option<&dyn Decryptor>,
) -> Result<(Box<dyn Read + Send>, Kind), ArchiveError> {
    let start = layout.map_or(0, |l| l.archive_offset);
    let mut file = reader_from_start(bundle, opened)?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    let mut head = [0u8; 512];
    let n = airgap_io::read_full(&mut file, &mut head)
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    if layout.is_some() && is_age(&head[..n]) {
        // The static unpacker that runs a `.run` has no crypto; airgap never writes one.
        return Err(ArchiveError::Corrupt {
            bundle: bundle.into(),
            reason:
                "a self-extracting bundle holding an encrypted archive, which airgap never writes"
                    .into(),
        });
    }
    let (file, magic, n): (Box<dyn Read + Send>, [u8; 4], usize) = if is_age(&head[..n]) {
        let Some(decryptor) = decryptor else {
            return Err(ArchiveError::Encrypted {
                bundle: bundle.into(),
            });
        };
        let mut plain =
            decryptor
                .open(bundle, Box::new(file))
                .map_err(|source| ArchiveError::Decrypt {
                    bundle: bundle.into(),
                    cause: source,
                })?;
        let mut magic = [0u8; 4];
        let n = airgap_io::read_full(&mut plain, &mut magic)
            .map_err(|e| ArchiveError::io("decrypting", bundle, e))?;
        let again = io::Cursor::new(magic[..n].to_vec()).chain(plain);
        (Box::new(again), magic, n)
    } else {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&head[..4]);
        (Box::new(file), magic, n.min(4))
    };
    let kind = match &magic[..n] {
        [0x1f, 0x8b, ..] => Kind::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Kind::Zstd,
        _ => Kind::Plain,
    };
    // A plain (or decrypted) stream must look like tar from its first header on; decrypted
    // ones are judged by the tar reader, whose first header comes next.
    if matches!(kind, Kind::Plain) && !is_age(&head) && !is_tar_header(&head) {
        return Err(ArchiveError::NotABundle {
            bundle: bundle.into(),
        });
    }
    if let Kind::Zstd = kind {
        if !cfg!(feature = "zstd") {
            return Err(ArchiveError::Corrupt {
                bundle: bundle.into(),
                reason:
                    "zstd-compressed, and this build has no zstd support (use the airgap command)"
                        .into(),
            });
        }
    }
    Ok((file, kind))
}

impl Stream {
    /// Decompress `file` on a thread of its own, a few buffers ahead of the reader (1 MiB
    /// each for members): memory stays flat.
    fn spawn(kind: Kind, file: Box<dyn Read + Send>) -> Stream {
        let (tx, rx) = bounded::<io::Result<Vec<u8>>>(2);
        let (recycle, used) = bounded::<Vec<u8>>(2);
        let handle = thread::spawn(move || decompress(kind, file, &tx, &used));
        Stream {
            rx,
            recycle: Some(recycle),
            current: Vec::new(),
            pos: 0,
            handle: Some(handle),
            done: false,
        }
    }
}

/// The decompressing thread: airgap's members on every core, any other gzip, zstd or plain
/// tar on this thread.
fn decompress(
    kind: Kind,
    file: Box<dyn Read + Send>,
    tx: &Sender<io::Result<Vec<u8>>>,
    used: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    let mut buffered = BufReader::with_capacity(CHUNK, file);
    let reader: Box<dyn Read> = match kind {
        Kind::Gzip => {
            let mut head = [0u8; gzmember::HEADER_LEN];
            let n = match airgap_io::read_full(&mut buffered, &mut head) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            if gzmember::member_len(&head[..n]).is_some() {
                return inflate_members(io::Cursor::new(head).chain(buffered), tx, used);
            }
            let again = BufReader::with_capacity(
                CHUNK,
                io::Cursor::new(head[..n].to_vec()).chain(buffered),
            );
            Box::new(flate2::bufread::MultiGzDecoder::new(again))
        }
        #[cfg(feature = "zstd")]
        Kind::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        #[cfg(not(feature = "zstd"))]
        Kind::Zstd => return Err(io::Error::other("no zstd support")),
        Kind::Plain => Box::new(buffered),
    };
    pump(reader, tx, used)
}

/// Send `reader`'s bytes on in chunks, reusing the chunks the reader hands back; an error is
/// sent in its place, so that the reader reports it where it happened.
fn pump(
    mut reader: Box<dyn Read>,
    tx: &Sender<io::Result<Vec<u8>>>,
    used: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    loop {
        let mut chunk = used.try_recv().unwrap_or_default();
        chunk.resize(CHUNK, 0);
        let n = match airgap_io::read_full(&mut reader, &mut chunk) {
            Ok(n) => n,
            Err(e) => {
                let msg = e.to_string();
                let _ = tx.send(Err(io::Error::new(e.kind(), msg.clone())));
                return Err(io::Error::new(e.kind(), msg));
            }
        };
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        if tx.send(Ok(chunk)).is_err() {
            return Err(io::Error::other("reader stopped"));
        }
    }
    Ok(())
}

/// Inflate a bundle of members that carry their lengths ([`gzmember`]) on every core: this
/// thread cuts the stream into members, a pool inflates them, and they are sent on in
/// order. An error (a header that is not ours, a stream cut inside a member, a bad member)
/// is sent in its place in the order, after everything before it.
fn inflate_members<R: Read>(
    mut input: R,
    tx: &Sender<io::Result<Vec<u8>>>,
    used: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    type Job = (u64, io::Result<Vec<u8>>);
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    // Member buffers go back from the inflating threads to this one.
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(threads);
    // Members in flight (1 MiB each at most, compressed and inflated): about 3 a thread.
    let (job_tx, job_rx) = bounded::<Job>(threads);
    let (done_tx, done_rx) = bounded::<Job>(threads);
    // Members cut but not yet handed on in order: one token each. Without this bound, a
    // thread stalled on member N (preempted on a busy machine) let the others inflate
    // members after it without end, held in `waiting` (162 MiB measured).
    let window = 3 * threads;
    let (token_tx, token_rx) = bounded::<()>(window);
    for _ in 0..window {
        let _ = token_tx.send(());
    }
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    thread::scope(|scope| {
        for _ in 0..threads {
            let (job_rx, done_tx, spare_tx) = (job_rx.clone(), done_tx.clone(), spare_tx.clone());
            scope.spawn(move || {
                while let Ok((seq, member)) = job_rx.recv() {
                    let data = member.and_then(|m| {
                        let mut out = used.try_recv().unwrap_or_default();
                        let inflated = gzmember::inflate_member(&m, &mut out);
                        let _ = spare_tx.try_send(m);
                        inflated.map(|()| out)
                    });
                    if done_tx.send((seq, data)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((job_rx, done_tx, spare_tx));
        let order = scope.spawn(move || -> io::Result<()> {
            let mut next = 0u64;
            let mut waiting = std::collections::BTreeMap::new();
            while let Ok((seq, data)) = done_rx.recv() {
                waiting.insert(seq, data);
                while let Some(data) = waiting.remove(&next) {
                    next += 1;
                    let failed = data.as_ref().err().map(|e| bad(e.to_string()));
                    if tx.send(data).is_err() {
                        return Err(io::Error::other("reader stopped"));
                    }
                    let _ = token_tx.send(());
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        let mut seq = 0u64;
        let cut = loop {
            if token_rx.recv().is_err() {
                break Err(io::Error::other("reader stopped"));
            }
            let mut head = [0u8; gzmember::HEADER_LEN];
            let n = match airgap_io::read_full(&mut input, &mut head) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            let member = match gzmember::member_len(&head[..n]) {
                None if n < head.len() => Err(bad("the gzip stream is cut short".into())),
                None => Err(bad(format!(
                    "gzip member {} does not start with the header airgap writes",
                    seq + 1
                ))),
                Some(len) => {
                    let mut member = spare_rx.try_recv().unwrap_or_default();
                    member.clear();
                    member.extend_from_slice(&head);
                    member.resize(len, 0);
                    match airgap_io::read_full(&mut input, &mut member[head.len()..]) {
                        Ok(got) if got + head.len() == len => Ok(member),
                        Ok(_) => Err(bad("the gzip stream is cut short".into())),
                        Err(e) => Err(e),
                    }
                }
            };
            let failed = member
                .as_ref()
                .err()
                .map(|e| io::Error::new(e.kind(), e.to_string()));
            if job_tx.send((seq, member)).is_err() {
                break Err(io::Error::other("reader stopped"));
            }
            seq += 1;
            if let Some(e) = failed {
                break Err(e);
            }
        };
        drop(job_tx);
        let ordered = order
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the decompression thread panicked")));
        cut.and(ordered)
    })
}

/// What the checker does with each entry.
pub(crate) enum Target<'a> {
    /// Check only.
    Verify,
    /// Also create everything under this (new, empty) directory.
    Extract(&'a Path),
    /// Check everything; under this (new, empty) directory create the directories and only
    /// the files `want` picks by their bundle path, mode and first bytes (what `airgap check
    /// BUNDLE` reads: ELF files, scripts, wheel metadata), as plain files.
    Pick(&'a Path, &'a Want),
}

/// Whether [`Target::Pick`] extracts a file: its path below the top folder, its mode and
/// its first bytes (up to one read chunk; fewer when the file is shorter).
pub type Want = dyn Fn(&str, u32, &[u8]) -> bool + Sync;

/// Where a file entry's data goes.
enum Sink<'s> {
    Nowhere,
    File(File),
    /// Opened on the first bytes, when `want` picks them.
    Maybe {
        path: PathBuf,
        rel: &'s str,
        mode: u32,
        want: &'s Want,
    },
}

impl Sink<'_> {
    /// Decide a [`Sink::Maybe`] on the file's first bytes.
    fn decide(&mut self, head: &[u8]) -> io::Result<()> {
        if let Sink::Maybe {
            path,
            rel,
            mode,
            want,
        } = self
        {
            *self = if want(rel, *mode, head) {
                Sink::File(new_file(path)?)
            } else {
                Sink::Nowhere
            };
        }
        Ok(())
    }

    fn file(&mut self) -> Option<&mut File> {
        match self {
            Sink::File(f) => Some(f),
            _ => None,
        }
    }
}

/// A file created by the reader: new, private until its mode is set, never through a link.
pub(crate) fn new_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// What a checked bundle holds.
#[derive(Debug)]
pub struct VerifyReport {
    /// The manifest (its records on disk).
    pub manifest: StreamedManifest,
    /// Entries checked (files, links, directories).
    pub entries: u64,
    /// Bytes of file content hashed.
    pub bytes: u64,
    /// `Some(true)` when `BUNDLE.sha256` exists and matches, `Some(false)` when it does not
    /// match, `None` when there is none.
    pub detached_sha256: Option<bool>,
    /// A delta's word on its base: the files it does not carry are checked only when it is
    /// applied (`unpack --onto`).
    pub delta: Option<crate::format::delta::DeltaMeta>,
}

impl VerifyReport {
    fn from(c: Checked, detached_sha256: Option<bool>) -> VerifyReport {
        VerifyReport {
            manifest: c.manifest,
            entries: c.entries,
            bytes: c.bytes,
            detached_sha256,
            delta: c.delta.map(|d| d.meta),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File,
    Dir,
    Symlink,
}

fn parent_of(rel: &[u8]) -> Option<&[u8]> {
    rel.iter().rposition(|&b| b == b'/').map(|n| &rel[..n])
}

/// Resolve `path` inside the bundle, following the bundle's own symlinks as the kernel
/// would; `false` if it ever climbs above the top folder.
pub(crate) fn resolves_inside(path: &[u8], links: &HashMap<Vec<u8>, Vec<u8>>) -> bool {
    fn walk(
        stack: &mut Vec<Vec<u8>>,
        rel: &[u8],
        links: &HashMap<Vec<u8>, Vec<u8>>,
        budget: &mut u32,
    ) -> bool {
        for c in rel.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    if stack.pop().is_none() {
                        return false;
                    }
                }
                c => {
                    stack.push(c.to_vec());
                    let joined = stack.join(&b'/');
                    if let Some(target) = links.get(&joined) {
                        if *budget == 0 {
                            return true; // a loop: harmless for escaping, the kernel gives ELOOP
                        }
                        *budget -= 1;
                        stack.pop();
                        if target.starts_with(b"/") || !walk(stack, target, links, budget) {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }
    let mut budget = 40;
    let mut stack = Vec::new();
    walk(&mut stack, path, links, &mut budget)
}

/// An entry the manifest lists, as the checks of its kind see it.
struct Listed<'e> {
    e: &'e TarEntry,
    /// Its path below the top folder.
    rel: Vec<u8>,
    /// That path as text, for messages.
    shown: String,
    /// Its record's place in the manifest.
    index: u64,
    record: FileRecord,
    /// Its permission bits.
    mode: u32,
}

/// The checker: the manifest says what must be there; every entry must match it exactly.
///
/// The records stay on disk ([`Records`]); an entry is matched to the next record in path
/// order (airgap writes the entries in that order, so a bundle is one merge of two sorted
/// lists), and an entry out of that order is looked up by binary search, so that every
/// bundle a hand-made tar could be is still checked exactly as before. What remains in
/// memory per path: 2 bits a record (what the archive had there: the parent, duplicate and
/// hard-link checks and the missing ones at the end need it), the link target of every
/// symbolic link (the check that no link leaves the bundle through others needs them all
/// together), and the entries the manifest does not list (verify reports them; a bundle
/// airgap wrote has none). The directories of an extraction, whose modes and times are set
/// at the end, go to a [`spill::Stack`]; the chain of ancestors of the last entry is a
/// cache of a few prefix lengths.
pub(crate) struct Checker<'a> {
    bundle: PathBuf,
    top: Vec<u8>,
    records: &'a Records,
    cursor: crate::format::manifest::records::Iter<'a>,
    /// The record at the cursor: its index, path bytes and record.
    next: Option<(u64, Vec<u8>, FileRecord)>,
    next_index: u64,
    kinds: Kinds,
    top_seen: bool,
    /// Entries the manifest does not list (verify goes on past them).
    extras: HashMap<Vec<u8>, Seen>,
    /// The last entry below the top folder, and which of its prefixes were entries (length,
    /// kind): the parents of the next entry in order.
    last: Vec<u8>,
    chain: Vec<(usize, Seen)>,
    /// The greatest path so far: a path beyond it was not seen yet.
    max: Vec<u8>,
    links: HashMap<Vec<u8>, Vec<u8>>,
    dirs: Option<spill::Stack<DirAt>>,
    /// What does not match, each with the number of the entry it was found at (the hashes
    /// come back from other threads out of order; sorted when reported).
    problems: Vec<(u64, String)>,
    /// The sha256 of each file, on other threads.
    hashers: Hashers,
    /// Stop at the first mismatch (unpack) rather than collecting them all (verify).
    fail_fast: bool,
    pub entries: u64,
    pub bytes: u64,
}

/// What the archive had at a manifest path, two bits a record (0: nothing yet).
struct Kinds(Vec<u8>);

impl Kinds {
    fn new(n: u64) -> Kinds {
        Kinds(vec![0; n.div_ceil(4) as usize])
    }

    fn get(&self, i: u64) -> Option<Seen> {
        let bits = (self.0[(i / 4) as usize] >> ((i % 4) * 2)) & 3;
        match bits {
            1 => Some(Seen::File),
            2 => Some(Seen::Dir),
            3 => Some(Seen::Symlink),
            _ => None,
        }
    }

    fn set(&mut self, i: u64, s: Seen) {
        let bits = match s {
            Seen::File => 1u8,
            Seen::Dir => 2,
            Seen::Symlink => 3,
        };
        let byte = &mut self.0[(i / 4) as usize];
        *byte = (*byte & !(3 << ((i % 4) * 2))) | (bits << ((i % 4) * 2));
    }
}

/// A directory of an extraction: its mode and time are set after everything inside it.
struct DirAt {
    rel: Vec<u8>,
    mode: u32,
    mtime: u64,
}

impl spill::Record for DirAt {
    fn encode(&self, out: &mut Vec<u8>) {
        spill::put_bytes(out, &self.rel);
        spill::put_u32(out, self.mode);
        spill::put_u64(out, self.mtime);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = spill::Decoder::new(bytes);
        Ok(DirAt {
            rel: d.bytes()?.to_vec(),
            mode: d.u32()?,
            mtime: d.u64()?,
        })
    }
}

/// Directories of an extraction kept in memory before they go to disk.
const DIRS_IN_MEMORY: usize = 1024;

impl<'a> Checker<'a> {
    /// A checker of the entries against `records` (checked by the manifest's reader: safe
    /// paths, sizes under the limit, none twice).
    pub(crate) fn new(
        bundle: &Path,
        top: Vec<u8>,
        records: &'a Records,
        fail_fast: bool,
        target: &Target<'_>,
    ) -> Result<Self, ArchiveError> {
        let mut checker = Checker {
            bundle: bundle.into(),
            top,
            records,
            cursor: records.iter(),
            next: None,
            next_index: 0,
            kinds: Kinds::new(records.len()),
            top_seen: false,
            extras: HashMap::new(),
            last: Vec::new(),
            chain: Vec::new(),
            max: Vec::new(),
            links: HashMap::new(),
            dirs: matches!(target, Target::Extract(_)).then(|| spill::Stack::new(DIRS_IN_MEMORY)),
            problems: Vec::new(),
            hashers: Hashers::new(),
            fail_fast,
            entries: 0,
            bytes: 0,
        };
        checker.advance()?;
        Ok(checker)
    }

    /// Move the cursor to the next record.
    fn advance(&mut self) -> Result<(), ArchiveError> {
        self.next = match self.cursor.next() {
            Some(r) => {
                let r = r?;
                let i = self.next_index;
                self.next_index += 1;
                Some((i, r.path_bytes(), r))
            }
            None => None,
        };
        Ok(())
    }

    /// The record of `rel` and its index: the one at the cursor when the entries come in
    /// path order, else by binary search.
    fn lookup(&mut self, rel: &[u8]) -> Result<Option<(u64, FileRecord)>, ArchiveError> {
        while let Some((_, path, _)) = &self.next {
            match path.as_slice().cmp(rel) {
                std::cmp::Ordering::Less => self.advance()?,
                std::cmp::Ordering::Equal => {
                    let found = self.next.take().map(|(i, _, r)| (i, r));
                    self.advance()?;
                    return Ok(found);
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        self.records.find(rel)
    }

    /// What the archive had at `rel` so far.
    fn seen(&self, rel: &[u8]) -> Result<Option<Seen>, ArchiveError> {
        if rel.is_empty() {
            return Ok(self.top_seen.then_some(Seen::Dir));
        }
        for &(len, kind) in self.chain.iter().rev() {
            if len == rel.len() && self.last.starts_with(rel) {
                return Ok(Some(kind));
            }
        }
        if rel > self.max.as_slice() {
            return Ok(None);
        }
        if let Some(kind) = self.extras.get(rel) {
            return Ok(Some(*kind));
        }
        Ok(match self.records.find(rel)? {
            Some((i, _)) => self.kinds.get(i),
            None => None,
        })
    }

    /// Note that the archive had `rel` (record `index`, if the manifest lists it) as `kind`.
    fn mark(&mut self, rel: Vec<u8>, index: Option<u64>, kind: Seen) {
        match index {
            Some(i) => self.kinds.set(i, kind),
            None => {
                self.extras.insert(rel.clone(), kind);
            }
        }
        if rel.as_slice() > self.last.as_slice() {
            // Keep the prefixes of `rel` that later entries in order may still be inside.
            while let Some(&(len, _)) = self.chain.last() {
                let keep =
                    rel.starts_with(&self.last[..len]) && rel.get(len).is_some_and(|&b| b <= b'/');
                if keep {
                    break;
                }
                self.chain.pop();
            }
        } else {
            self.chain.clear();
        }
        self.chain.push((rel.len(), kind));
        if rel.as_slice() > self.max.as_slice() {
            self.max.clone_from(&rel);
        }
        self.last = rel;
    }

    fn unsafe_entry(&self, path: &[u8], reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Unsafe {
            bundle: self.bundle.clone(),
            entry: String::from_utf8_lossy(path).into_owned(),
            reason: reason.into(),
        }
    }

    /// A mismatch at the current entry (after the last one: at its end).
    fn problem(&mut self, text: String) -> Result<(), ArchiveError> {
        self.problem_at(self.entries, text)
    }

    fn problem_at(&mut self, key: u64, text: String) -> Result<(), ArchiveError> {
        self.problems.push((key, text));
        if self.fail_fast {
            self.problems.extend(self.hashers.found());
            return Err(self.mismatch());
        }
        Ok(())
    }

    /// The problems so far, in the order of the entries they were found at.
    fn mismatch(&mut self) -> ArchiveError {
        let mut problems = std::mem::take(&mut self.problems);
        problems.sort_by_key(|p| p.0);
        ArchiveError::Mismatch {
            bundle: self.bundle.clone(),
            problems: problems.into_iter().map(|p| p.1).collect(),
        }
    }

    /// Take the hashes that came back wrong.
    fn hash_problems(&mut self) -> Result<(), ArchiveError> {
        for (key, text) in self.hashers.found() {
            self.problem_at(key, text)?;
        }
        Ok(())
    }

    /// Wait for the last hashes.
    fn last_hash_problems(&mut self) -> Result<(), ArchiveError> {
        let found = self
            .hashers
            .finish()
            .map_err(|reason| ArchiveError::Corrupt {
                bundle: self.bundle.clone(),
                reason,
            })?;
        for (key, text) in found {
            self.problem_at(key, text)?;
        }
        Ok(())
    }

    /// Check one entry and, when extracting, create it. `tar` is positioned at its data.
    pub(crate) fn entry<R: Read>(
        &mut self,
        e: &TarEntry,
        tar: &mut TarReader<R>,
        target: &Target<'_>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        self.entries += 1;
        let rel = self.relative_path(e)?;
        let mode = self.check_header(e)?;
        if !self.check_place(e, &rel)? {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(&rel).into_owned();
        let Some((index, record)) = self.lookup(&rel)? else {
            return self.extra(e, rel, &shown);
        };
        let dest = match target {
            Target::Extract(root) | Target::Pick(root, _) => {
                Some(root.join(OsStr::from_bytes(&rel)))
            }
            Target::Verify => None,
        };
        let listed = Listed {
            e,
            rel,
            shown,
            index,
            record,
            mode,
        };
        match e.kind {
            EntryType::Dir => self.dir(listed, dest.as_deref()),
            // Links are not needed where files are picked: the manifest lists them.
            EntryType::Symlink => self.symlink(
                listed,
                dest.as_deref()
                    .filter(|_| matches!(target, Target::Extract(_))),
            ),
            EntryType::HardLink => self.hard_link(listed, target),
            EntryType::File | EntryType::Sparse => {
                self.file(listed, tar, target, dest.as_deref(), progress)
            }
            EntryType::Other(_) => unreachable!("refused by check_header"),
        }
    }

    /// The entry's path below the top folder (empty for the top folder itself): inside it,
    /// safe, and not a second manifest.
    fn relative_path(&self, e: &TarEntry) -> Result<Vec<u8>, ArchiveError> {
        let rel: Vec<u8> = if e.path == self.top {
            Vec::new()
        } else {
            match e
                .path
                .strip_prefix(self.top.as_slice())
                .and_then(|r| r.strip_prefix(b"/"))
            {
                Some(r) => r.to_vec(),
                None => return Err(self.unsafe_entry(&e.path, "outside the bundle's top folder")),
            }
        };
        if !rel.is_empty() {
            check_rel(&rel).map_err(|r| self.unsafe_entry(&e.path, r))?;
        }
        if rel == MANIFEST_PATH.as_bytes() {
            return Err(self.unsafe_entry(&e.path, "duplicate entry (a second manifest)"));
        }
        Ok(rel)
    }

    /// What the header alone says: a kind airgap writes, a sane size, no setuid or setgid
    /// bit. Returns the permission bits.
    fn check_header(&self, e: &TarEntry) -> Result<u32, ArchiveError> {
        if let EntryType::Other(t) = e.kind {
            let what = match t {
                b'3' => "a character device".to_string(),
                b'4' => "a block device".to_string(),
                b'6' => "a fifo".to_string(),
                b'x' | b'g' => "a PAX header (airgap never writes one)".to_string(),
                other => format!("an entry of unsupported type {:?}", other as char),
            };
            return Err(self.unsafe_entry(&e.path, what));
        }
        if e.real_size > MAX_FILE_SIZE {
            return Err(self.unsafe_entry(
                &e.path,
                format!(
                    "declares {} bytes, over the {MAX_FILE_SIZE} bytes allowed",
                    e.real_size
                ),
            ));
        }
        if e.mode & 0o6000 != 0 {
            return Err(self.unsafe_entry(&e.path, "setuid or setgid bit"));
        }
        Ok((e.mode & 0o7777) as u32)
    }

    /// The entry's place in the archive: not seen before, after its parent directory, which
    /// is a directory. Returns false for the top folder, which needs nothing more.
    fn check_place(&mut self, e: &TarEntry, rel: &[u8]) -> Result<bool, ArchiveError> {
        // An entry beyond every earlier one (airgap writes them in order) is new.
        let again = if rel.is_empty() {
            self.top_seen
        } else {
            rel <= self.max.as_slice() && self.seen(rel)?.is_some()
        };
        if again {
            return Err(self.unsafe_entry(&e.path, "duplicate entry"));
        }
        if rel.is_empty() {
            if e.kind != EntryType::Dir {
                return Err(self.unsafe_entry(&e.path, "the top folder is not a directory"));
            }
            self.top_seen = true;
            return Ok(false);
        }
        match parent_of(rel) {
            None => {
                if !self.top_seen {
                    return Err(self.unsafe_entry(&e.path, "comes before its top folder"));
                }
            }
            Some(p) => match self.seen(p)? {
                Some(Seen::Dir) => {}
                Some(_) => {
                    return Err(self.unsafe_entry(
                        &e.path,
                        "its parent is a link or a file (writing through a link is refused)",
                    ))
                }
                None => return Err(self.unsafe_entry(&e.path, "comes before its parent directory")),
            },
        }
        Ok(true)
    }

    /// An entry the manifest does not list: unpack refuses it outright, verify reports it.
    fn extra(&mut self, e: &TarEntry, rel: Vec<u8>, shown: &str) -> Result<(), ArchiveError> {
        if self.fail_fast {
            return Err(self.unsafe_entry(&e.path, "not listed in the manifest"));
        }
        self.problem(format!(
            "extra: {shown} is in the archive but not in the manifest"
        ))?;
        let kind = match e.kind {
            EntryType::Dir => Seen::Dir,
            EntryType::Symlink => Seen::Symlink,
            _ => Seen::File,
        };
        self.mark(rel, None, kind);
        Ok(())
    }

    /// A directory: created (owner-only until `finish` gives it its mode).
    fn dir(&mut self, l: Listed<'_>, dest: Option<&Path>) -> Result<(), ArchiveError> {
        let Listed {
            e,
            rel,
            shown,
            index,
            record,
            mode,
        } = l;
        if record.kind != FileType::Dir {
            self.problem(format!(
                "changed: {shown} is a directory in the archive, a {:?} in the manifest",
                record.kind
            ))?;
        }
        if record.mode != mode {
            self.problem(format!(
                "mode: {shown} is {mode:o} in the archive, {:o} in the manifest",
                record.mode
            ))?;
        }
        if let Some(dest) = &dest {
            fs::create_dir(dest).map_err(|err| ArchiveError::io("creating", dest, err))?;
            fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
                .map_err(|err| ArchiveError::io("creating", dest, err))?;
        }
        if let Some(dirs) = &mut self.dirs {
            dirs.push(DirAt {
                rel: rel.clone(),
                mode: mode & 0o1777,
                mtime: e.mtime,
            })
            .map_err(scratch_error)?;
        }
        self.mark(rel, Some(index), Seen::Dir);
        Ok(())
    }

    /// A symbolic link: relative, staying inside the bundle, as the manifest says.
    fn symlink(&mut self, l: Listed<'_>, dest: Option<&Path>) -> Result<(), ArchiveError> {
        let Listed {
            e,
            rel,
            shown,
            index,
            record,
            ..
        } = l;
        if e.link.is_empty()
            || e.link.starts_with(b"/")
            || !crate::format::manifest::link_stays_inside(parent_of(&rel).unwrap_or(b""), &e.link)
        {
            return Err(self.unsafe_entry(
                &e.path,
                format!(
                    "symbolic link to {:?} points outside the bundle",
                    String::from_utf8_lossy(&e.link)
                ),
            ));
        }
        if record.kind != FileType::Symlink
            || record.target_bytes().as_deref() != Some(e.link.as_slice())
        {
            self.problem(format!(
                "changed: {shown} is a link to {:?} in the archive, not what the manifest says",
                String::from_utf8_lossy(&e.link)
            ))?;
        }
        if let Some(dest) = dest {
            std::os::unix::fs::symlink(OsStr::from_bytes(&e.link), dest)
                .map_err(|err| ArchiveError::io("creating", dest, err))?;
            let t = FileTime::from_unix_time(e.mtime as i64, 0);
            let _ = filetime::set_symlink_file_times(dest, t, t);
        }
        self.links.insert(rel.clone(), e.link.clone());
        self.mark(rel, Some(index), Seen::Symlink);
        Ok(())
    }

    /// A hard link: to a file extracted before it, with the content the manifest lists.
    fn hard_link(&mut self, l: Listed<'_>, target: &Target<'_>) -> Result<(), ArchiveError> {
        let Listed {
            e,
            rel,
            shown,
            index,
            record,
            ..
        } = l;
        let first = e
            .link
            .strip_prefix(self.top.as_slice())
            .and_then(|r| r.strip_prefix(b"/"))
            .map(|r| r.to_vec());
        let Some(first) = first else {
            return Err(self.unsafe_entry(
                &e.path,
                format!(
                    "hard link to {:?} outside the bundle",
                    String::from_utf8_lossy(&e.link)
                ),
            ));
        };
        // One binary search gives the first copy's record and what the archive had.
        let found_first = match check_rel(&first) {
            Ok(()) => self.records.find(&first)?,
            Err(_) => None,
        };
        let first_kind = match &found_first {
            Some((i, _)) => self.kinds.get(*i),
            None => self.extras.get(&first).copied(),
        };
        if check_rel(&first).is_err() || first_kind != Some(Seen::File) {
            return Err(self.unsafe_entry(
                &e.path,
                format!(
                    "hard link to {:?}, which is not a file extracted before it",
                    String::from_utf8_lossy(&e.link)
                ),
            ));
        }
        let first_record = found_first.map(|(_, r)| r);
        let same = first_record.is_some_and(|f| {
            f.sha256 == record.sha256 && f.size == record.size && f.mode == record.mode
        });
        if record.kind != FileType::File || !same {
            self.problem(format!(
                "changed: {shown} is a hard link to content the manifest does not list for it"
            ))?;
        }
        match target {
            Target::Extract(root) | Target::Pick(root, _) => {
                let src = root.join(OsStr::from_bytes(&first));
                let dest = root.join(OsStr::from_bytes(&rel));
                // A picked tree has only the picked first copies.
                let picked_out =
                    matches!(target, Target::Pick(..)) && fs::symlink_metadata(&src).is_err();
                if !picked_out {
                    fs::hard_link(&src, &dest)
                        .map_err(|err| ArchiveError::io("creating", &dest, err))?;
                }
            }
            Target::Verify => {}
        }
        self.mark(rel, Some(index), Seen::File);
        Ok(())
    }

    /// A file: its size checked before any byte is read, then its data hashed (and written).
    fn file<R: Read>(
        &mut self,
        l: Listed<'_>,
        tar: &mut TarReader<R>,
        target: &Target<'_>,
        dest: Option<&Path>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        let Listed {
            e,
            rel,
            shown,
            index,
            record,
            mode,
        } = l;
        if record.kind != FileType::File {
            self.problem(format!(
                "changed: {shown} is a file in the archive, a {:?} in the manifest",
                record.kind
            ))?;
        }
        if record.size != e.real_size {
            // Refuse before reading: a hostile size must not make us write anything.
            self.problem(format!(
                "size: {shown} is {} bytes in the archive, {} in the manifest",
                e.real_size, record.size
            ))?;
            // Verify goes on with the next entry; hashing this one proves nothing
            // more, and a sparse entry's holes could be declared exabytes long.
            self.mark(rel, Some(index), Seen::File);
            return Ok(());
        }
        if record.mode != mode {
            self.problem(format!(
                "mode: {shown} is {mode:o} in the archive, {:o} in the manifest",
                record.mode
            ))?;
        }
        let mut out = match (target, &dest) {
            (Target::Extract(_), Some(dest)) => {
                Sink::File(new_file(dest).map_err(|err| ArchiveError::io("creating", dest, err))?)
            }
            (Target::Pick(_, want), Some(dest)) => Sink::Maybe {
                path: dest.to_path_buf(),
                rel: &shown,
                mode,
                want: *want,
            },
            _ => Sink::Nowhere,
        };
        let key = self.entries;
        copy_data(e, tar, &mut out, &mut self.hashers, progress).map_err(|err| match err {
            CopyError::Cancelled => ArchiveError::Cancelled,
            CopyError::Read(err) => ArchiveError::Corrupt {
                bundle: self.bundle.clone(),
                reason: format!("reading {shown}: {err}"),
            },
            CopyError::Write(err) => {
                ArchiveError::io("writing", dest.unwrap_or(Path::new("")), err)
            }
        })?;
        self.bytes += e.real_size;
        if let (Some(f), Some(dest)) = (out.file(), &dest) {
            f.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                .map_err(|err| ArchiveError::io("writing", dest, err))?;
            let t = FileTime::from_unix_time(e.mtime as i64, 0);
            filetime::set_file_handle_times(f, Some(t), Some(t))
                .map_err(|err| ArchiveError::io("writing", dest, err))?;
        }
        drop(out);
        self.hashers.end(Expected {
            key,
            shown,
            sha256: record.sha256,
        });
        self.hash_problems()?;
        self.mark(rel, Some(index), Seen::File);
        Ok(())
    }

    /// After the last entry: nothing missing but what a delta takes from its base (each
    /// handed to `reuse`, in path order, before any directory is closed), no link escaping
    /// through other links; then the directories get their modes and times.
    pub(crate) fn finish(
        mut self,
        target: &Target<'_>,
        delta: Option<&Delta>,
        mut reuse: Option<&mut Reuse<'_>>,
    ) -> Result<(u64, u64), ArchiveError> {
        self.last_hash_problems()?;
        let mut reused = ReusedCursor::new(delta);
        for (i, r) in self.records.iter().enumerate() {
            let r = r?;
            let path = r.path_bytes();
            let here = reused.take(&path, &mut |x| self.problem(unlisted(x)))?;
            let seen = self.kinds.get(i as u64);
            if here.is_some() {
                if let Some(text) = reuse_refusal(&r, seen.is_some()) {
                    self.problem(text)?;
                    continue;
                }
            }
            match (seen, here) {
                (None, None) => {
                    let text = format!(
                        "missing: {} is in the manifest but not in the archive",
                        r.path
                    );
                    self.problem(text)?;
                }
                (None, Some(x)) => {
                    // Its parent must be a directory the archive had, as for any entry.
                    let parent = parent_of(&path).map_or(Ok(Some(Seen::Dir)), |p| self.seen(p))?;
                    if parent != Some(Seen::Dir) {
                        let text = format!(
                            "the delta takes {} from its base, but its parent is not a directory of the bundle",
                            r.path
                        );
                        self.problem(text)?;
                    } else if x.patch && !delta.is_some_and(|d| d.patches.contains(&path)) {
                        let text =
                            format!("the delta patches {} but carries no patch for it", r.path);
                        self.problem(text)?;
                    } else if let Some(reuse) = reuse.as_deref_mut() {
                        reuse(&x, &r)?;
                        self.bytes += r.size;
                    }
                }
                (Some(_), _) => {}
            }
        }
        while let Some(x) = reused.next_upto(None)? {
            self.problem(unlisted(&x))?;
        }
        if let Some(d) = delta.filter(|d| d.patched != d.patches.len()) {
            let text = format!(
                "the delta carries {} patch(es) but its list patches {} file(s)",
                d.patches.len(),
                d.patched
            );
            self.problem(text)?;
        }
        for (path, _) in self.links.iter() {
            if !resolves_inside(path, &self.links) {
                return Err(
                    self.unsafe_entry(path, "symbolic link leaves the bundle through other links")
                );
            }
        }
        if !self.problems.is_empty() {
            return Err(self.mismatch());
        }
        if let (Target::Extract(root), Some(dirs)) = (target, &mut self.dirs) {
            while let Some(d) = dirs.pop().map_err(scratch_error)? {
                let dest = root.join(OsStr::from_bytes(&d.rel));
                fs::set_permissions(&dest, fs::Permissions::from_mode(d.mode))
                    .map_err(|err| ArchiveError::io("writing", &dest, err))?;
                let t = FileTime::from_unix_time(d.mtime as i64, 0);
                let _ = filetime::set_file_times(&dest, t, t);
            }
        }
        Ok((self.entries, self.bytes))
    }
}

/// Why a delta may not take the record `r` from its base, when the archive (or the
/// extracted tree) also `carried` that path: only files are taken, and never beside a copy
/// of their own. `None` when it may.
pub(crate) fn reuse_refusal(r: &FileRecord, carried: bool) -> Option<String> {
    if r.kind != FileType::File {
        Some(format!(
            "the delta takes {} from its base, but only files are taken",
            r.path
        ))
    } else if carried {
        Some(format!(
            "the delta both carries {} and takes it from its base",
            r.path
        ))
    } else {
        None
    }
}

/// The problem of a reused line that no record of the manifest matches.
pub(crate) fn unlisted(x: &Reused) -> String {
    format!(
        "the delta takes {} from its base, but the manifest does not list it",
        String::from_utf8_lossy(&x.path)
    )
}

/// What a delta's reader does with each file the delta takes from its base: its line and
/// its record in the new manifest.
pub(crate) type Reuse<'r> = dyn FnMut(&Reused, &FileRecord) -> Result<(), ArchiveError> + 'r;

/// A delta's list of reused files, read beside the manifest's records in path order.
pub(crate) struct ReusedCursor<'d>(Option<std::iter::Peekable<ReusedIter<'d>>>);

type ReusedIter<'d> = Box<dyn Iterator<Item = io::Result<Reused>> + 'd>;

impl<'d> ReusedCursor<'d> {
    /// The list of `delta`, or an empty one.
    pub(crate) fn new(delta: Option<&'d Delta>) -> Self {
        ReusedCursor(delta.map(|d| (Box::new(d.iter()) as ReusedIter).peekable()))
    }

    /// The line for the record at `path`, if the list has one; the lines before it (which
    /// no record matches) go to `unlisted`.
    pub(crate) fn take(
        &mut self,
        path: &[u8],
        unlisted: &mut dyn FnMut(&Reused) -> Result<(), ArchiveError>,
    ) -> Result<Option<Reused>, ArchiveError> {
        while let Some(x) = self.next_upto(Some(path))? {
            if x.path == path {
                return Ok(Some(x));
            }
            unlisted(&x)?;
        }
        Ok(None)
    }

    /// The next line whose path is at most `upto` (any, with `None`).
    pub(crate) fn next_upto(
        &mut self,
        upto: Option<&[u8]>,
    ) -> Result<Option<Reused>, ArchiveError> {
        let Some(list) = &mut self.0 else {
            return Ok(None);
        };
        if let (Some(Ok(r)), Some(upto)) = (list.peek(), upto) {
            if r.path.as_slice() > upto {
                return Ok(None);
            }
        }
        list.next().transpose().map_err(scratch_error)
    }
}

enum CopyError {
    Cancelled,
    Read(io::Error),
    Write(io::Error),
}

/// Holes sent to the hashers in pieces of this size, so that Ctrl-C stops a long run of them.
const HOLE_PIECE: u64 = 16 << 20;

/// Stream an entry's data into `out` and to the hashers (as the current file of
/// `hashers`, begun here and ended by the caller), expanding sparse holes.
fn copy_data<R: Read>(
    e: &TarEntry,
    tar: &mut TarReader<R>,
    out: &mut Sink<'_>,
    hashers: &mut Hashers,
    progress: &dyn Progress,
) -> Result<(), CopyError> {
    hashers.begin();
    let whole = [(0u64, e.size)];
    let segments: &[(u64, u64)] = if e.kind == EntryType::Sparse {
        &e.sparse
    } else {
        &whole
    };
    let mut pos = 0u64;
    // Holes cost no reading, only hashing: let Ctrl-C stop a long run of them.
    let hole = |hashers: &Hashers, pos: &mut u64, end: u64| -> Result<(), CopyError> {
        while *pos < end {
            if progress.is_cancelled() {
                return Err(CopyError::Cancelled);
            }
            let n = (end - *pos).min(HOLE_PIECE);
            hashers.zeros(n);
            *pos += n;
            progress.advance(n);
        }
        Ok(())
    };
    let mut first = true;
    for &(off, len) in segments {
        hole(hashers, &mut pos, off)?;
        if let Some(f) = out.file() {
            if e.kind == EntryType::Sparse {
                f.seek(SeekFrom::Start(off)).map_err(CopyError::Write)?;
            }
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(BUF as u64) as usize;
            // Sized to the piece: most files are small.
            let mut buf = hashers.buffer(n);
            let mut got = 0;
            while got < n {
                let k = tar.read_data(&mut buf[got..n]).map_err(CopyError::Read)?;
                got += k;
            }
            if first {
                // A picked file starts at offset 0: a sparse file whose data starts later
                // has no magic bytes to pick it by.
                first = false;
                let head = if off == 0 { &buf[..n] } else { &[][..] };
                out.decide(head).map_err(CopyError::Write)?;
                if let (Some(f), true) = (out.file(), e.kind == EntryType::Sparse) {
                    f.seek(SeekFrom::Start(off)).map_err(CopyError::Write)?;
                }
            }
            if let Some(f) = out.file() {
                f.write_all(&buf).map_err(CopyError::Write)?;
            }
            hashers.data(buf);
            left -= n as u64;
            pos += n as u64;
            progress.advance(n as u64);
        }
    }
    hole(hashers, &mut pos, e.real_size)?;
    if first {
        out.decide(&[]).map_err(CopyError::Write)?;
    }
    if let Some(f) = out.file() {
        if e.kind == EntryType::Sparse {
            f.set_len(e.real_size).map_err(CopyError::Write)?;
        }
    }
    Ok(())
}

/// What the one reader found: the manifest, a delta's description, the counts.
pub(crate) struct Checked {
    pub manifest: StreamedManifest,
    pub delta: Option<Delta>,
    pub entries: u64,
    pub bytes: u64,
}

/// What a caller of the reader does at its two moments: `on_manifest` sees the manifest (and
/// a delta's description) before any file is read; `reuse` takes each file a delta leaves to
/// its base, after the last entry (`unpack --onto`; without it the list is only checked).
pub(crate) struct Hooks<'m, 'r> {
    pub on_manifest: Option<&'m mut OnManifest<'m>>,
    pub reuse: Option<&'r mut Reuse<'r>>,
}

/// What a reader's caller checks when the manifest (and a delta's description) is known.
pub(crate) type OnManifest<'m> =
    dyn FnMut(&StreamedManifest, Option<&Delta>) -> Result<(), ArchiveError> + 'm;

impl Hooks<'_, '_> {
    /// Nothing to do but check.
    pub(crate) fn none() -> Hooks<'static, 'static> {
        Hooks {
            on_manifest: None,
            reuse: None,
        }
    }
}

/// Read a whole bundle through the checker. Returns the manifest and the counts.
pub(crate) fn check_bundle(
    bundle: &Path,
    file: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
    target: &Target<'_>,
    fail_fast: bool,
    progress: &dyn Progress,
    hooks: Hooks<'_, '_>,
) -> Result<Checked, ArchiveError> {
    let (stream, layout) = open_archive_layout(bundle, file, decryptor)?;
    let mut tar = TarReader::new(stream);
    let checked = check_tar(
        bundle,
        &mut tar,
        (target, fail_fast),
        progress,
        hooks,
        |tar| {
            let stream = std::mem::replace(tar.get_mut(), empty_stream());
            stream.finish()
        },
    )?;
    if let Some(layout) = layout {
        check_run_unpacker(bundle, file, &layout, &checked.manifest)?;
    }
    Ok(checked)
}

/// The unpacker of a `.run` (what its header runs) must be the archive's own copy,
/// `.airgap/airgap-unpack` as the manifest lists it, followed by zeros to the archive: so a
/// changed byte anywhere in a `.run` is refused (the header is rebuilt and compared by
/// [`crate::format::selfx::parse`], the archive by the checker).
fn check_run_unpacker(
    bundle: &Path,
    file: &BundleFile,
    layout: &crate::format::selfx::Layout,
    manifest: &StreamedManifest,
) -> Result<(), ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason,
    };
    let record = manifest
        .files
        .find(crate::format::manifest::UNPACKER_PATH.as_bytes())?
        .map(|(_, r)| r);
    let Some(expected) = record.and_then(|r| r.sha256) else {
        return Err(corrupt(format!(
            "a self-extracting bundle whose archive has no {}",
            crate::format::manifest::UNPACKER_PATH
        )));
    };
    let mut f = reader_from_start(bundle, file)?;
    f.seek(SeekFrom::Start(layout.unpacker_offset))
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    let mut part = (&mut f).take(layout.unpacker_size);
    let mut h = Sha256::new();
    let n = io::copy(&mut part, &mut HashWrite(&mut h))
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    let actual = hex::encode(h.finalize());
    if n != layout.unpacker_size || actual != expected {
        return Err(corrupt(format!(
            "the unpacker its sh header runs (bytes {}..{}) is not the archive's {} (sha256 {actual}, the manifest says {expected})",
            layout.unpacker_offset,
            layout.unpacker_offset + layout.unpacker_size,
            crate::format::manifest::UNPACKER_PATH
        )));
    }
    let pad = (layout.archive_offset - layout.unpacker_offset - layout.unpacker_size) as usize;
    let mut zeros = vec![0u8; pad];
    let got = airgap_io::read_full(&mut f, &mut zeros)
        .map_err(|e| ArchiveError::io("reading", bundle, e))?;
    if got != pad || zeros.iter().any(|&b| b != 0) {
        return Err(corrupt(
            "the padding after the unpacker of its sh header is not zeros".into(),
        ));
    }
    Ok(())
}

/// A sha256 as an `io::Write`, for `io::copy`.
struct HashWrite<'a>(&'a mut Sha256);

impl Write for HashWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The checker over any tar stream; `finish` runs after the end marker (compression
/// trailers) and before the last checks.
fn check_tar<R: Read>(
    bundle: &Path,
    tar: &mut TarReader<R>,
    (target, fail_fast): (&Target<'_>, bool),
    progress: &dyn Progress,
    hooks: Hooks<'_, '_>,
    finish: impl FnOnce(&mut TarReader<R>) -> io::Result<()>,
) -> Result<Checked, ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason,
    };
    let (top, manifest) = read_first_entry(bundle, tar)?;
    check_top(bundle, &manifest.meta, &top)?;
    crate::install::steps::check_steps(&manifest)?;
    // The records are checked (safe paths, sizes under the limit) before the caller sees
    // the manifest, so that its preflight (free space) reckons with sane numbers only.
    if let Some((entry, reason)) = &manifest.refused {
        return Err(ArchiveError::Unsafe {
            bundle: bundle.into(),
            entry: entry.clone(),
            reason: reason.clone(),
        });
    }
    let mut checker = Checker::new(bundle, top.clone(), &manifest.files, fail_fast, target)?;
    let mut pending = Some(tar.next_entry().map_err(|e| corrupt(e.to_string()))?);
    let delta = match pending.take() {
        Some(Some(e)) if is_delta_entry(&top, &e) => {
            let mut delta = read_delta(bundle, tar, &e)?;
            pending = Some(read_patches(bundle, &top, tar, target, &mut delta)?);
            Some(delta)
        }
        other => {
            pending = other;
            None
        }
    };
    if let Some(on_manifest) = hooks.on_manifest {
        on_manifest(&manifest, delta.as_ref())?;
    }
    progress.begin("verifying", manifest.total_size(), Unit::Bytes);
    let reuse = hooks.reuse;
    let result = (|| {
        loop {
            if progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let entry = match pending.take() {
                Some(entry) => entry,
                None => tar.next_entry().map_err(|e| corrupt(e.to_string()))?,
            };
            let Some(entry) = entry else { break };
            checker.entry(&entry, tar, target, progress)?;
        }
        finish(tar).map_err(|e| corrupt(e.to_string()))?;
        checker.finish(target, delta.as_ref(), reuse)
    })();
    progress.end();
    let (entries, bytes) = result?;
    Ok(Checked {
        manifest,
        delta,
        entries,
        bytes,
    })
}

/// Is `e` a delta's description (`TOP/.airgap/delta.toml`, a file), the entry after the
/// manifest?
fn is_delta_entry(top: &[u8], e: &TarEntry) -> bool {
    let mut path = top.to_vec();
    path.push(b'/');
    path.extend_from_slice(crate::format::delta::DELTA_PATH.as_bytes());
    e.path == path && e.kind == EntryType::File
}

/// Where a reader keeps the patches of a delta it extracts (inside staging, removed before
/// the tree is installed).
pub(crate) const PATCH_SCRATCH: &str = ".airgap-patches";

/// The patches after a delta's description (`TOP/.airgap/patch/PATH.zst`, files): kept in
/// [`PATCH_SCRATCH`] when extracting, else only read; noted in `delta.patches`. Returns the
/// first entry after them.
fn read_patches<R: Read>(
    bundle: &Path,
    top: &[u8],
    tar: &mut TarReader<R>,
    target: &Target<'_>,
    delta: &mut Delta,
) -> Result<Option<TarEntry>, ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason,
    };
    let mut prefix = top.to_vec();
    prefix.push(b'/');
    prefix.extend_from_slice(crate::format::delta::PATCH_DIR.as_bytes());
    loop {
        let Some(e) = tar.next_entry().map_err(|e| corrupt(e.to_string()))? else {
            return Ok(None);
        };
        let inner = match e.path.strip_prefix(prefix.as_slice()) {
            Some(rest) if e.kind == EntryType::File => rest.strip_suffix(b".zst"),
            _ => None,
        };
        let Some(path) = inner.map(<[u8]>::to_vec) else {
            return Ok(Some(e));
        };
        check_rel(&path).map_err(|r| corrupt(format!("a patch's path: {r}")))?;
        if e.size > crate::format::delta::MAX_PATCHED || !delta.patches.insert(path.clone()) {
            return Err(corrupt(format!(
                "the patch of {} is too large or carried twice",
                String::from_utf8_lossy(&path)
            )));
        }
        let mut data = crate::format::manifest::EntryData(tar).take(e.size);
        let copied = match target {
            Target::Extract(root) => {
                let dir = root.join(PATCH_SCRATCH);
                let _ = fs::create_dir(&dir);
                let dest = dir.join(crate::format::delta::patch_scratch_name(&path));
                let mut out =
                    new_file(&dest).map_err(|err| ArchiveError::io("creating", &dest, err))?;
                io::copy(&mut data, &mut out)
            }
            _ => io::copy(&mut data, &mut io::sink()),
        }
        .map_err(|err| corrupt(err.to_string()))?;
        if copied != e.size {
            return Err(corrupt("a patch was cut short".into()));
        }
    }
}

/// A delta's description, read from its entry (bounded; never extracted: the tree it
/// makes is the new version's, whose manifest does not list it).
fn read_delta<R: Read>(
    bundle: &Path,
    tar: &mut TarReader<R>,
    e: &TarEntry,
) -> Result<Delta, ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason: format!("{}: {reason}", crate::format::delta::DELTA_PATH),
    };
    if e.size > crate::format::delta::MAX_DELTA {
        return Err(corrupt(format!(
            "{} bytes, more than a delta may hold",
            e.size
        )));
    }
    let data = crate::format::manifest::EntryData(tar).take(e.size);
    let mut input = BufReader::new(data);
    Delta::read(&mut input).map_err(corrupt)
}

/// Check an uncompressed tar stream exactly as [`verify_bundle`] checks a bundle (without
/// the detached checksum); `name` is only used in errors. For fuzzing and for callers that
/// hold the stream themselves.
pub fn verify_stream<R: Read>(
    name: &Path,
    reader: R,
    progress: &dyn Progress,
) -> Result<VerifyReport, ArchiveError> {
    let mut tar = TarReader::new(reader);
    let checked = check_tar(
        name,
        &mut tar,
        (&Target::Verify, false),
        progress,
        Hooks::none(),
        |_| Ok(()),
    )?;
    Ok(VerifyReport::from(checked, None))
}

fn empty_stream() -> Stream {
    let (_tx, rx) = bounded(1);
    Stream {
        rx,
        recycle: None,
        current: Vec::new(),
        pos: 0,
        handle: None,
        done: true,
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ArchiveError> {
    let f = File::open(path).map_err(|e| ArchiveError::io("reading", path, e))?;
    sha256_opened(path, &BundleFile::from_file(f))
}

/// sha256 of an opened file from its start, hex.
pub fn sha256_opened(path: &Path, file: &BundleFile) -> Result<String, ArchiveError> {
    sha256_size_opened(path, file).map(|(sha, _)| sha)
}

/// sha256 (hex) and size of an opened file (a split bundle: of its volumes' concatenation),
/// in one pass.
pub fn sha256_size_opened(path: &Path, file: &BundleFile) -> Result<(String, u64), ArchiveError> {
    let mut f = reader_from_start(path, file)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| ArchiveError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// The detached checksum file of a bundle, if there is one: `BUNDLE.sha256`.
pub fn detached_sha256_path(bundle: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", bundle.display()))
}

/// Check every entry of a bundle against its manifest (and the detached `.sha256` when
/// present). Any difference is an [`ArchiveError::Mismatch`] listing all of them.
pub fn verify_bundle(bundle: &Path, progress: &dyn Progress) -> Result<VerifyReport, ArchiveError> {
    let file = open_bundle(bundle)?;
    verify_opened(bundle, &file, None, progress)
}

/// [`verify_bundle`] over a descriptor from [`open_bundle`] (the one the signature was
/// checked on), age-encrypted bundles through `decryptor`.
pub fn verify_opened(
    bundle: &Path,
    file: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
    progress: &dyn Progress,
) -> Result<VerifyReport, ArchiveError> {
    let mut problems = Vec::new();
    let detached = detached_sha256_path(bundle);
    let expected = fs::read_to_string(&detached).ok().map(|text| {
        text.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    });
    // The whole file's sha256 on a thread of its own, beside the check's read of the same
    // bytes (while the manifest is read, one thread is all the check runs).
    let (actual, checked) = thread::scope(|scope| {
        let actual = expected
            .is_some()
            .then(|| scope.spawn(|| sha256_opened(bundle, file)));
        let checked = check_bundle(
            bundle,
            file,
            decryptor,
            &Target::Verify,
            false,
            progress,
            Hooks::none(),
        );
        let actual = actual.map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(ArchiveError::Corrupt {
                    bundle: bundle.into(),
                    reason: "the thread hashing the bundle stopped".into(),
                })
            })
        });
        (actual, checked)
    });
    let detached_sha256 = match (expected, actual) {
        (Some(expected), Some(actual)) => {
            let actual = actual?;
            if expected != actual {
                problems.push(format!(
                    "checksum: the archive's sha256 is {actual}, {} says {expected}",
                    detached.display()
                ));
                Some(false)
            } else {
                Some(true)
            }
        }
        _ => None,
    };
    match checked {
        Ok(checked) => {
            if !problems.is_empty() {
                return Err(ArchiveError::Mismatch {
                    bundle: bundle.into(),
                    problems,
                });
            }
            Ok(VerifyReport::from(checked, detached_sha256))
        }
        Err(ArchiveError::Mismatch {
            bundle,
            problems: more,
        }) => {
            problems.extend(more);
            Err(ArchiveError::Mismatch { bundle, problems })
        }
        Err(e) if !problems.is_empty() => {
            problems.push(e.to_string());
            Err(ArchiveError::Mismatch {
                bundle: bundle.into(),
                problems,
            })
        }
        Err(e) => Err(e),
    }
}

/// Check a bundle exactly as [`verify_bundle`] does (without the detached checksum) and
/// extract into `root` (new, empty) its directories and the files `want` picks. For readers
/// that need a few files' contents, such as the target check: they get the one strict
/// reader's verdict, never a second tar reader's.
pub fn pick_bundle(
    bundle: &Path,
    root: &Path,
    want: &Want,
    progress: &dyn Progress,
) -> Result<VerifyReport, ArchiveError> {
    let file = open_bundle(bundle)?;
    pick_opened(bundle, &file, None, root, want, false, progress)
}

/// [`pick_bundle`] over a descriptor from [`open_bundle`] (the one a signature was checked
/// on), age-encrypted bundles through `decryptor`; a delta is read too when `delta` (its
/// files from the base are then absent from `root`: [`VerifyReport::delta`] says so).
pub fn pick_opened(
    bundle: &Path,
    file: &BundleFile,
    decryptor: Option<&dyn Decryptor>,
    root: &Path,
    want: &Want,
    delta: bool,
    progress: &dyn Progress,
) -> Result<VerifyReport, ArchiveError> {
    let mut refuse_delta = |_: &StreamedManifest, d: Option<&Delta>| match d {
        Some(_) if delta => Ok(()),
        Some(d) => Err(ArchiveError::DeltaNeedsBase {
            bundle: bundle.into(),
            base_name: d.meta.base_name.clone(),
            base: d.meta.base.clone(),
        }),
        None => Ok(()),
    };
    let checked = check_bundle(
        bundle,
        file,
        decryptor,
        &Target::Pick(root, want),
        false,
        progress,
        Hooks {
            on_manifest: Some(&mut refuse_delta),
            reuse: None,
        },
    )?;
    Ok(VerifyReport::from(checked, None))
}
/// The manifest of an extracted or unpacked bundle folder, streamed, refused over
/// [`MAX_MANIFEST`](crate::format::manifest::MAX_MANIFEST) before it is read.
pub(crate) fn open_manifest_in(tree: &Path) -> Result<StreamedManifest, ArchiveError> {
    let path = tree.join(MANIFEST_PATH);
    let file = fs::File::open(&path).map_err(|e| ArchiveError::io("reading", &path, e))?;
    let size = file
        .metadata()
        .map_err(|e| ArchiveError::io("reading", &path, e))?
        .len();
    if size > crate::format::manifest::MAX_MANIFEST {
        return Err(ArchiveError::ManifestTooLarge {
            bundle: tree.into(),
            size,
            max: crate::format::manifest::MAX_MANIFEST,
        });
    }
    crate::format::manifest::stream_from(
        tree,
        &mut file.take(crate::format::manifest::MAX_MANIFEST + 1),
        &|e| ArchiveError::io("reading", &path, e),
    )
}
