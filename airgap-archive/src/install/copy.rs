//! Copying a file into staging: hashed in the same read, its holes kept (a small bundle
//! must not fill the target's disk), for an extracted tree's unpack and a delta's files
//! taken from its base alike.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use filetime::FileTime;
use sha2::{Digest, Sha256};

use crate::error::ArchiveError;
use crate::progress::Progress;

/// Hash `len` zero bytes (a hole) without reading or writing them; Ctrl-C stops a long run.
fn hash_zeros(
    h: &mut Sha256,
    mut len: u64,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    buf.fill(0);
    while len > 0 {
        if progress.is_cancelled() {
            return Err(ArchiveError::Cancelled);
        }
        let n = len.min(buf.len() as u64) as usize;
        h.update(&buf[..n]);
        progress.advance(n as u64);
        len -= n as u64;
    }
    Ok(())
}

/// Copy `src` (of metadata `meta`) to `dst` (new) with `mode` and `src`'s mtime; returns
/// the sha256 of its content.
pub(crate) fn copy_file(
    src: &Path,
    dst: &Path,
    mode: u32,
    meta: &fs::Metadata,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Result<String, ArchiveError> {
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(|e| ArchiveError::io("reading", src, e))?;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)
        .map_err(|e| ArchiveError::io("creating", dst, e))?;
    let mut h = Sha256::new();
    // A file with holes (GNU tar recreates them from the bundle's sparse entries) is copied
    // segment by segment and its holes are skipped, as `unpack` from the archive does: a
    // small bundle must not fill the target's disk through `NAME/unpack`.
    let size = meta.len();
    let whole = [(0u64, u64::MAX)];
    let found = crate::sparse::data_segments(&input, meta);
    let segments: &[(u64, u64)] = found.as_deref().unwrap_or(&whole);
    let mut pos = 0u64;
    for &(off, len) in segments {
        if found.is_some() {
            hash_zeros(&mut h, off.saturating_sub(pos), buf, progress)?;
            input
                .seek(io::SeekFrom::Start(off))
                .map_err(|e| ArchiveError::io("reading", src, e))?;
            out.seek(io::SeekFrom::Start(off))
                .map_err(|e| ArchiveError::io("writing", dst, e))?;
            pos = off;
        }
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = input
                .read(&mut buf[..want])
                .map_err(|e| ArchiveError::io("reading", src, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| ArchiveError::io("writing", dst, e))?;
            progress.advance(n as u64);
            left -= n as u64;
            pos += n as u64;
        }
    }
    if found.is_some() {
        hash_zeros(&mut h, size.saturating_sub(pos), buf, progress)?;
        out.set_len(size)
            .map_err(|e| ArchiveError::io("writing", dst, e))?;
    }
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ArchiveError::io("writing", dst, e))?;
    let t = FileTime::from_last_modification_time(meta);
    filetime::set_file_handle_times(&out, Some(t), Some(t))
        .map_err(|e| ArchiveError::io("writing", dst, e))?;
    Ok(hex::encode(h.finalize()))
}
