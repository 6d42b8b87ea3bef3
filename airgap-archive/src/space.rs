//! The one free-space check before an unpack writes anything: what the manifest says the
//! installed tree takes, against what DEST's file system has free, so that a full disk is
//! refused at once with the figures rather than after minutes of extraction.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::ArchiveError;
use crate::manifest::{FileType, Manifest};
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
/// are not counted, so the check never refuses what fits.
pub fn needed(manifest: &Manifest, block: u64) -> Needed<'_> {
    let block = block.max(1);
    let mut seen: HashSet<(&str, u64, u32)> = HashSet::new();
    let mut n = Needed {
        bytes: 0,
        inodes: 0,
        largest: None,
    };
    for f in &manifest.files {
        if f.kind == FileType::File {
            if let Some(sha) = f.sha256.as_deref() {
                if !seen.insert((sha, f.size, f.mode)) {
                    continue;
                }
            }
            n.bytes = n
                .bytes
                .saturating_add(f.size.div_ceil(block).saturating_mul(block));
            if n.largest.is_none_or(|(_, size)| f.size > size) {
                n.largest = Some((f.path.as_str(), f.size));
            }
        }
        n.inodes += 1;
    }
    n
}

/// What an unpack takes at least ([`needed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needed<'m> {
    /// Bytes of disk.
    pub bytes: u64,
    /// Inodes.
    pub inodes: u64,
    /// The largest file and its size: named in the refusal, as the first thing to look at.
    pub largest: Option<(&'m str, u64)>,
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
    manifest: &Manifest,
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
    } = needed(manifest, free.block);
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
