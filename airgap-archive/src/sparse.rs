//! Files with holes: where their data is, so that the writer stores a sparse entry and the
//! unpacker copying an extracted tree keeps holes as holes.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;

/// Data segments of a file with holes (`None` for an ordinary file). Also used by the
/// unpacker copying an extracted tree, so that holes stay holes there too.
pub(crate) fn data_segments(f: &File, meta: &fs::Metadata) -> Option<Vec<(u64, u64)>> {
    let size = meta.len();
    if size == 0 || meta.blocks().saturating_mul(512) >= size {
        return None;
    }
    let fd = f.as_raw_fd();
    let mut segs = Vec::new();
    let mut pos: i64 = 0;
    let end = size as i64;
    while pos < end {
        // SAFETY: lseek on a file descriptor we own; no memory is touched.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return None;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return None;
        }
        let hole = hole.min(end);
        if hole > data {
            segs.push((data as u64, (hole - data) as u64));
        }
        pos = hole;
    }
    if segs.last().is_none_or(|&(o, l)| o + l < size) {
        segs.push((size, 0));
    }
    Some(segs)
}
