//! Atomic output: a file appears at its final path whole, or not at all. The bundle, its
//! detached files, a rewritten file of `relocate` and the probe's profile all go through
//! [`TempFile`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::ArchiveError;

/// A file beside its final path, removed unless committed, so that the final path only ever
/// holds a complete file.
///
/// Its name is fixed (`.NAME.partial`) and it is held under an exclusive `flock` while it is
/// written, so that two runs writing the same output do not interleave: the second one fails
/// with [`ArchiveError::Busy`]. A temporary file left by a killed run is not locked by anyone;
/// the next run takes it over.
pub struct TempFile {
    pub path: PathBuf,
    pub file: File,
    done: bool,
}

impl TempFile {
    pub fn new(final_path: &Path) -> Result<TempFile, ArchiveError> {
        let dir = match final_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into());
        let path = dir.join(format!(".{name}.partial"));
        loop {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| ArchiveError::io("creating", &path, e))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Err(ArchiveError::Busy {
                        output: final_path.to_path_buf(),
                        temp: path,
                    });
                }
                return Err(ArchiveError::io("locking", &path, e));
            }
            // The run that held it may have renamed or removed it between our open and our
            // lock: then we hold a file that is no longer at `path`, and start again.
            let ours = file.metadata().map(|m| (m.dev(), m.ino())).ok();
            let there = fs::symlink_metadata(&path).map(|m| (m.dev(), m.ino())).ok();
            if ours.is_none() || ours != there {
                continue;
            }
            file.set_len(0)
                .map_err(|e| ArchiveError::io("writing", &path, e))?;
            return Ok(TempFile {
                path,
                file,
                done: false,
            });
        }
    }

    /// fsync, rename onto `final_path`, fsync the directory.
    pub fn commit(mut self, final_path: &Path) -> Result<(), ArchiveError> {
        self.file
            .sync_all()
            .map_err(|e| ArchiveError::io("writing", &self.path, e))?;
        fs::rename(&self.path, final_path)
            .map_err(|e| ArchiveError::io("renaming into", final_path, e))?;
        self.done = true;
        if let Some(dir) = final_path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write a small file (a profile, a report) atomically: the whole of `bytes` appears at
/// `path`, or nothing changes there.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let tmp = TempFile::new(path)?;
    (&tmp.file)
        .write_all(bytes)
        .map_err(|e| ArchiveError::io("writing", &tmp.path, e))?;
    tmp.commit(path)
}
