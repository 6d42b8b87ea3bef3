//! Where a bundle's bytes come from: one regular file, or the volumes of a split bundle
//! ([`crate::format::volumes`]) read as their concatenation. Every reader (the signature,
//! the detached checksum, decryption, the archive) reads a [`BundleFile`] from its start,
//! so a split bundle goes through the same reader as a whole one, in place: no copy of it
//! is made on disk or in memory.
//!
//! A volume set is opened from its first volume (`NAME.tar.gz.001`) or its list
//! (`NAME.tar.gz.volumes`): the list is read once and kept, as bytes, for the signature
//! check ([`BundleFile::signed`]), which comes first. Before the first byte of contents is
//! read, the list is parsed, every volume is opened once and checked against it (missing,
//! wrong size, one more than it lists) and hashed in order, and a volume that is not what
//! the list says is named by its number; then the readers hash each volume again as it
//! passes, so a volume changed in between fails the read.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::format::volumes::{
    list_name, parse_volume_name, volume_name, VolumeList, LIST_SUFFIX, MAX_LIST,
};
use crate::progress::{NoProgress, Progress, Unit};

const CHUNK: usize = 256 * 1024;

/// A bundle opened once for every later read ([`crate::install::read::open_bundle`]).
pub struct BundleFile {
    kind: Kind,
}

enum Kind {
    One(File),
    Volumes(Arc<VolumeSet>),
}

/// A split bundle: its list as read, and its volumes once they were checked.
pub struct VolumeSet {
    list_path: PathBuf,
    list_bytes: Vec<u8>,
    /// The volume the user named (`None`: the list).
    named: Option<usize>,
    /// The list parsed and every volume opened and hashed: set by the first reader.
    ready: Mutex<Option<Arc<Ready>>>,
}

/// The volumes, opened and found to be what the list says.
struct Ready {
    list_path: PathBuf,
    list: VolumeList,
    files: Vec<(PathBuf, File)>,
}

/// What the first pass found wrong with one volume.
struct Fault {
    number: usize,
    reason: String,
}

impl BundleFile {
    /// A regular file opened by the caller.
    pub fn from_file(file: File) -> BundleFile {
        BundleFile {
            kind: Kind::One(file),
        }
    }

    /// The one file, when this bundle is not split.
    pub fn as_file(&self) -> Option<&File> {
        match &self.kind {
            Kind::One(f) => Some(f),
            Kind::Volumes(_) => None,
        }
    }

    /// The volume set, when this bundle is split.
    pub fn volumes(&self) -> Option<&VolumeSet> {
        match &self.kind {
            Kind::One(_) => None,
            Kind::Volumes(v) => Some(v),
        }
    }

    /// A reader of the bundle's bytes from their start. For volumes, the first call hashes
    /// every volume and refuses the set naming the first volume that differs from its list.
    pub fn reader(&self, bundle: &Path) -> Result<BundleReader, ArchiveError> {
        match &self.kind {
            Kind::One(file) => {
                let dup = file
                    .try_clone()
                    .map_err(|e| ArchiveError::io("reading", bundle, e))?;
                Ok(BundleReader::One(Positioned { file: dup, pos: 0 }))
            }
            Kind::Volumes(set) => Ok(BundleReader::Volumes(Concat::new(set.ready(&NoProgress)?))),
        }
    }

    /// For volumes, the first pass over them ([`BundleFile::reader`] makes it otherwise),
    /// reported to `progress`: for a reader that shows it, after the signature check.
    pub fn check_volumes(&self, progress: &dyn Progress) -> Result<(), ArchiveError> {
        match &self.kind {
            Kind::One(_) => Ok(()),
            Kind::Volumes(set) => set.ready(progress).map(|_| ()),
        }
    }

    /// What a signature covers, and its file (the signature is `FILE.minisig`): the bundle
    /// file itself, or a split bundle's list (whose hashes bind every volume).
    pub fn signed(
        &self,
        bundle: &Path,
    ) -> Result<(PathBuf, Box<dyn ReadSeek + Send>), ArchiveError> {
        match &self.kind {
            Kind::One(_) => Ok((bundle.to_path_buf(), Box::new(self.reader(bundle)?))),
            Kind::Volumes(set) => Ok((
                set.list_path.clone(),
                Box::new(io::Cursor::new(set.list_bytes.clone())),
            )),
        }
    }
}

/// What a signature check reads: minisign reads it twice (its prehash).
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

impl VolumeSet {
    /// The volume list's path.
    pub fn list_path(&self) -> &Path {
        &self.list_path
    }

    /// The list's bytes, as read once (what a signature covers).
    pub fn list_bytes(&self) -> &[u8] {
        &self.list_bytes
    }

    /// The volumes, checked: the first call parses the list, opens every volume and hashes
    /// them all; an error is returned to the caller (who stops), a success kept.
    fn ready(&self, progress: &dyn Progress) -> Result<Arc<Ready>, ArchiveError> {
        let mut ready = self
            .ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = ready.as_ref() {
            return Ok(r.clone());
        }
        let list = parse_list(&self.list_path, &self.list_bytes, self.named)?;
        let files = open_listed(&self.list_path, &list)?;
        let r = Ready {
            list_path: self.list_path.clone(),
            list,
            files,
        };
        progress.begin("checking volumes", r.list.size, Unit::Bytes);
        let found = r.check(progress);
        progress.end();
        if progress.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        if let Some(f) = found {
            return Err(ArchiveError::Volume {
                list: self.list_path.clone(),
                number: f.number,
                file: r.files[f.number - 1].0.clone(),
                reason: f.reason,
            });
        }
        let r = Arc::new(r);
        *ready = Some(r.clone());
        Ok(r)
    }
}

impl Ready {
    /// Hash every volume in order; the first that is not what the list says is the fault,
    /// and a volume with another's contents says so (a reordered set).
    fn check(&self, progress: &dyn Progress) -> Option<Fault> {
        let mut whole = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        for (i, (_, file)) in self.files.iter().enumerate() {
            let record = &self.list.volumes[i];
            let mut h = Sha256::new();
            let mut at = 0u64;
            while at < record.size {
                let want = (record.size - at).min(CHUNK as u64) as usize;
                match file.read_at(&mut buf[..want], at) {
                    Ok(0) => {
                        return Some(Fault {
                            number: i + 1,
                            reason: format!(
                                "it ended at {at} bytes, and the list says {}",
                                record.size
                            ),
                        })
                    }
                    Ok(n) => {
                        h.update(&buf[..n]);
                        whole.update(&buf[..n]);
                        at += n as u64;
                        progress.advance(n as u64);
                        if progress.is_cancelled() {
                            return None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some(Fault {
                            number: i + 1,
                            reason: format!("reading it: {e}"),
                        })
                    }
                }
            }
            let actual = hex::encode(h.finalize());
            if actual != record.sha256 {
                let other = self
                    .list
                    .volumes
                    .iter()
                    .position(|v| v.sha256 == actual && v.size == record.size);
                let reason = match other {
                    Some(j) => format!(
                        "it has the contents of volume {} ({}): the volumes were renamed or mixed up",
                        j + 1,
                        self.list.volumes[j].name
                    ),
                    None => format!(
                        "it is damaged: its sha256 is {actual}, {} says {}",
                        self.list_path.display(),
                        record.sha256
                    ),
                };
                return Some(Fault {
                    number: i + 1,
                    reason,
                });
            }
        }
        let actual = hex::encode(whole.finalize());
        (actual != self.list.sha256).then(|| Fault {
            number: self.files.len(),
            reason: format!(
                "the volumes together have sha256 {actual}, and the list says {}",
                self.list.sha256
            ),
        })
    }
}

/// A reader of a [`BundleFile`] from its start.
pub enum BundleReader {
    /// The one file, by positioned reads.
    One(Positioned),
    /// The concatenation of the volumes.
    Volumes(Concat),
}

impl Read for BundleReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BundleReader::One(p) => {
                let n = p.file.read_at(buf, p.pos)?;
                p.pos += n as u64;
                Ok(n)
            }
            BundleReader::Volumes(c) => c.read(buf),
        }
    }
}

impl Seek for BundleReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            BundleReader::One(p) => {
                let to = match pos {
                    SeekFrom::Start(n) => Some(n),
                    SeekFrom::Current(d) => p.pos.checked_add_signed(d),
                    SeekFrom::End(d) => p.file.metadata()?.len().checked_add_signed(d),
                };
                p.pos = to.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
                })?;
                Ok(p.pos)
            }
            BundleReader::Volumes(c) => c.seek(pos),
        }
    }
}

/// One file read by positioned reads: a duplicate descriptor shares its offset with the
/// original, and two readers of one bundle (the check and the whole file's hash) run at once.
pub struct Positioned {
    file: File,
    pos: u64,
}

/// The volumes read as one file, by positioned reads (each reader has its own position).
/// Read in order from a volume's start, each volume is hashed again as it passes and
/// compared with the list at its end.
pub struct Concat {
    set: Arc<Ready>,
    pos: u64,
    /// Where each volume starts, and the end.
    starts: Vec<u64>,
    /// The hash of the current volume, while it is read in order from its start.
    hasher: Option<Sha256>,
}

impl Concat {
    fn new(set: Arc<Ready>) -> Concat {
        let mut starts = Vec::with_capacity(set.files.len() + 1);
        let mut at = 0u64;
        for v in &set.list.volumes {
            starts.push(at);
            at += v.size;
        }
        starts.push(at);
        Concat {
            set,
            pos: 0,
            starts,
            hasher: Some(Sha256::new()),
        }
    }

    /// The volume holding byte `pos` (the last one's end belongs to no volume).
    fn volume_at(&self, pos: u64) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= pos).checked_sub(1)?;
        (i < self.set.files.len()).then_some(i)
    }

    fn changed(&self, i: usize, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "volume {} ({}) changed after it was checked: {what}",
                i + 1,
                self.set.files[i].0.display()
            ),
        )
    }
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(i) = self.volume_at(self.pos) else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let end = self.starts[i + 1];
        let want = (end - self.pos).min(buf.len() as u64) as usize;
        let offset = self.pos - self.starts[i];
        let n = self.set.files[i].1.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(self.changed(i, format!("it ended at {offset} bytes")));
        }
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.pos += n as u64;
        if self.pos == end {
            if let Some(h) = self.hasher.take() {
                let actual = hex::encode(h.finalize());
                if actual != self.set.list.volumes[i].sha256 {
                    return Err(self.changed(i, format!("its sha256 is now {actual}")));
                }
            }
            self.hasher = Some(Sha256::new());
        }
        Ok(n)
    }
}

impl Seek for Concat {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let end = *self.starts.last().unwrap_or(&0);
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != self.pos {
            // Hashing goes on only from a volume's start.
            self.hasher = self.starts.contains(&target).then(Sha256::new);
            self.pos = target;
        }
        Ok(target)
    }
}

/// How a path names a split bundle: its list, and the volume named (`None`: the list).
fn volume_set_of(path: &Path) -> Option<(PathBuf, Option<usize>)> {
    let name = path.file_name()?.to_str()?;
    if let Some(bundle) = name.strip_suffix(LIST_SUFFIX) {
        return (!bundle.is_empty()).then(|| (path.to_path_buf(), None));
    }
    let (bundle, number) = parse_volume_name(name)?;
    let list = path.with_file_name(list_name(bundle));
    // A file named like a volume is one when its list is there, or when the next volume
    // is (a set whose list is missing); else it is a bundle that happens to end in digits.
    let next = path.with_file_name(volume_name(bundle, number + 1));
    (list.exists() || next.exists()).then_some((list, Some(number)))
}

/// Open `path` as a volume set, or `None` when it names none.
pub(crate) fn open_volumes(path: &Path) -> Result<Option<BundleFile>, ArchiveError> {
    let Some((list_path, named)) = volume_set_of(path) else {
        return Ok(None);
    };
    let list_file = match open_regular(&list_path) {
        Ok(f) => f,
        Err(ArchiveError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
            return Err(ArchiveError::VolumeList {
                list: list_path,
                reason: format!(
                    "is missing, and {} is a volume of a split bundle: airgap reads the volumes through their list",
                    path.display()
                ),
            })
        }
        Err(e) => return Err(e),
    };
    let mut list_bytes = Vec::new();
    (&list_file)
        .take(MAX_LIST + 1)
        .read_to_end(&mut list_bytes)
        .map_err(|e| ArchiveError::io("reading", &list_path, e))?;
    if list_bytes.len() as u64 > MAX_LIST {
        return Err(ArchiveError::VolumeList {
            list: list_path,
            reason: format!("is over {MAX_LIST} bytes"),
        });
    }
    Ok(Some(BundleFile {
        kind: Kind::Volumes(Arc::new(VolumeSet {
            list_path,
            list_bytes,
            named,
            ready: Mutex::new(None),
        })),
    }))
}

/// The list of the bytes read, checked ([`VolumeList::parse`]), when the volume named is
/// its first.
fn parse_list(
    list_path: &Path,
    bytes: &[u8],
    named: Option<usize>,
) -> Result<VolumeList, ArchiveError> {
    let bad_list = |reason: String| ArchiveError::VolumeList {
        list: list_path.into(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad_list("is not text".into()))?;
    let bundle = list_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(LIST_SUFFIX))
        .unwrap_or_default()
        .to_string();
    let list = VolumeList::parse(text, &bundle).map_err(bad_list)?;
    if let Some(n) = named.filter(|&n| n != 1) {
        return Err(bad_list(format!(
            "{} is volume {n}: name volume 1 or the list",
            volume_name(&bundle, n)
        )));
    }
    Ok(list)
}

/// Every volume the list names, opened, with the size it says; and none after the last.
fn open_listed(list_path: &Path, list: &VolumeList) -> Result<Vec<(PathBuf, File)>, ArchiveError> {
    let mut files = Vec::with_capacity(list.volumes.len());
    for (i, v) in list.volumes.iter().enumerate() {
        let path = list_path.with_file_name(&v.name);
        let fault = |reason: String| ArchiveError::Volume {
            list: list_path.into(),
            number: i + 1,
            file: path.clone(),
            reason,
        };
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(ArchiveError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
                return Err(fault(format!(
                    "it is missing (the list names {} volumes)",
                    list.volumes.len()
                )))
            }
            Err(e) => return Err(e),
        };
        let size = file
            .metadata()
            .map_err(|e| ArchiveError::io("reading", &path, e))?
            .len();
        if size != v.size {
            return Err(fault(format!(
                "it is {size} bytes, and the list says {}",
                v.size
            )));
        }
        files.push((path, file));
    }
    let extra = list_path.with_file_name(volume_name(&list.bundle, list.volumes.len() + 1));
    if fs::symlink_metadata(&extra).is_ok() {
        return Err(ArchiveError::VolumeList {
            list: list_path.into(),
            reason: format!(
                "it lists {} volumes, and {} is there too: a volume of another (larger) run of this bundle",
                list.volumes.len(),
                extra.display()
            ),
        });
    }
    Ok(files)
}

/// Open a file for reading, refusing anything but a regular file without blocking: a fifo
/// would hang the open, and could not be read twice anyway.
pub(crate) fn open_regular(path: &Path) -> Result<File, ArchiveError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ArchiveError::io("opening", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| ArchiveError::io("opening", path, e))?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a fifo")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_dir() {
        Some("a directory")
    } else {
        Some("not a file")
    };
    if let Some(kind) = kind {
        return Err(ArchiveError::NotRegular {
            path: path.into(),
            kind,
        });
    }
    // SAFETY: fcntl on a descriptor we own; clearing O_NONBLOCK involves no memory.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    if rc != 0 {
        return Err(ArchiveError::io(
            "opening",
            path,
            io::Error::last_os_error(),
        ));
    }
    Ok(file)
}
