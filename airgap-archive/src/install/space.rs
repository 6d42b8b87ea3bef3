//! The one free-space check before an unpack writes anything: what the manifest says the
//! installed tree takes, against what DEST's file system has free, so that a full disk is
//! refused at once with the figures rather than after minutes of extraction.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::ArchiveError;
use crate::format::manifest::{FileType, StreamedManifest};
use crate::spill::{Decoder, Record, Sorter};
use crate::text::human_bytes;

/// Free space of the file system holding a path, for an unprivileged writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Free {
    /// Bytes free (`f_bavail * f_frsize`).
    pub bytes: u64,
    /// Inodes free (`f_favail`); `None` when the file system does not count them.
    pub inodes: Option<u64>,
    /// The allocation unit (`f_frsize`), by which file sizes are rounded up.
    pub block: u64,
}

/// What installing `manifest` takes at least: file contents rounded up to whole `block`s,
/// identical contents counted once (the writer stores them as hard links), and one inode
/// per other entry. A lower bound: directories and the prefix rewriting's temporary copies
/// are not counted, so the check never refuses what fits. Identical contents are found by
/// sorting them ([`crate::spill::Sorter`]), so that memory stays flat.
pub fn needed(manifest: &StreamedManifest, block: u64) -> Result<Needed, ArchiveError> {
    let block = block.max(1);
    let scratch = |e: io::Error| {
        ArchiveError::io(
            "using scratch files in",
            std::env::temp_dir().join("(unnamed)"),
            e,
        )
    };
    let rounded = |size: u64| size.div_ceil(block).saturating_mul(block);
    let mut n = Needed {
        bytes: 0,
        inodes: 0,
        largest: None,
    };
    let mut contents = Sorter::<Content>::new(crate::spill::DEFAULT_BUDGET);
    for f in manifest.files.iter() {
        let f = f?;
        if f.kind == FileType::File {
            match f.sha256 {
                Some(sha) => contents
                    .push(Content {
                        sha256: sha.into_bytes(),
                        size: f.size,
                        mode: f.mode,
                    })
                    .map_err(scratch)?,
                None => n.bytes = n.bytes.saturating_add(rounded(f.size)),
            }
            if n.largest.as_ref().is_none_or(|(_, size)| f.size > *size) {
                n.largest = Some((f.path, f.size));
            }
        }
        n.inodes += 1;
    }
    let mut previous: Option<Content> = None;
    for c in contents.finish().map_err(scratch)? {
        let c = c.map_err(scratch)?;
        if previous.as_ref() == Some(&c) {
            // A second copy: a hard link, no room and no inode of its own.
            n.inodes -= 1;
            continue;
        }
        n.bytes = n.bytes.saturating_add(rounded(c.size));
        previous = Some(c);
    }
    Ok(n)
}

/// A file's content as the manifest lists it, for counting identical ones once.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Content {
    sha256: Vec<u8>,
    size: u64,
    mode: u32,
}

impl Record for Content {
    fn encode(&self, out: &mut Vec<u8>) {
        crate::spill::put_bytes(out, &self.sha256);
        crate::spill::put_u64(out, self.size);
        crate::spill::put_u32(out, self.mode);
    }
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        Ok(Content {
            sha256: d.bytes()?.to_vec(),
            size: d.u64()?,
            mode: d.u32()?,
        })
    }
}

/// What an unpack takes at least ([`needed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// Bytes of disk.
    pub bytes: u64,
    /// Inodes.
    pub inodes: u64,
    /// The largest file and its size: named in the refusal, as the first thing to look at.
    pub largest: Option<(String, u64)>,
}

/// The nearest ancestor of `path` (absolute) that exists: where a new DEST would be made.
pub fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path;
    loop {
        if std::fs::symlink_metadata(p).is_ok() {
            return p.to_path_buf();
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return PathBuf::from("/"),
        }
    }
}

/// `statvfs(2)` of `path`.
pub fn free_at(path: &Path) -> io::Result<Free> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` room for one statvfs, which the call fills.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it wrote the whole struct.
    let st = unsafe { st.assume_init() };
    let block = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    Ok(Free {
        // statvfs's counts are u64 on the x86-64 Linux targets airgap supports.
        bytes: st.f_bavail.saturating_mul(block),
        inodes: (st.f_files > 0).then_some(st.f_favail),
        block,
    })
}

/// Refuse `dest` (absolute) when its file system (that of its nearest existing ancestor)
/// has less room than [`needed`] for `manifest`. A file system that cannot be asked is
/// let through: the unpack still fails cleanly when the disk fills. `from_tree`: the unpack
/// copies an extracted bundle (said in the advice).
pub fn check_free_space(
    dest: &Path,
    manifest: &StreamedManifest,
    from_tree: bool,
) -> Result<(), ArchiveError> {
    let at = existing_ancestor(dest);
    let Ok(free) = free_at(&at) else {
        return Ok(());
    };
    let Needed {
        bytes,
        inodes,
        largest,
    } = needed(manifest, free.block)?;
    if bytes > free.bytes {
        let largest = largest
            .map(|(path, size)| format!(" (the largest file: {path}, {})", human_bytes(size)))
            .unwrap_or_default();
        return Err(ArchiveError::NoSpace {
            dest: dest.into(),
            at,
            needed: bytes,
            available: free.bytes,
            what: format!(
                "{} ({bytes} bytes) needed, {} ({} bytes) free{largest}",
                human_bytes(bytes),
                human_bytes(free.bytes),
                free.bytes
            ),
            from_tree,
        });
    }
    if let Some(free_inodes) = free.inodes {
        if inodes > free_inodes {
            return Err(ArchiveError::NoSpace {
                dest: dest.into(),
                at,
                needed: inodes,
                available: free_inodes,
                what: format!("{inodes} inodes needed, {free_inodes} free"),
                from_tree,
            });
        }
    }
    Ok(())
}
