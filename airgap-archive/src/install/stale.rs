//! Scratch directories that a killed run leaves behind, told apart from live ones: each is
//! named after its process and `flock`ed while it lives. One implementation for unpack's
//! staging directories beside DEST and bundle's work directories in `$TMPDIR`.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Open a directory (never through a symlink) and take its `flock` without waiting; `None`
/// when another process holds it.
pub fn lock_dir(path: &Path) -> io::Result<Option<fs::File>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(f));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Directories may have been made read-only by their modes: open them up so removal works.
pub fn make_writable(root: &Path) {
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
}

/// How a scratch directory's name goes on after its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `PREFIX` + PID exactly.
    Pid,
    /// `PREFIX` + PID + `-` + anything (several per process).
    PidDash,
}

/// The PID in a scratch directory's name, when it is one of ours.
fn pid_of(name: &str, prefix: &str, form: Name) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = match form {
        Name::Pid => rest,
        Name::PidDash => rest.split_once('-')?.0,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Remove the scratch directories in `parent` that killed runs left. Only what is provably
/// ours and stale goes: a name of `form` after `prefix`, a real directory owned by us, its PID
/// no longer running (or ours), and nobody holding its lock. Returns the directories removed.
pub fn remove_stale(parent: &Path, prefix: &str, form: Name) -> Vec<PathBuf> {
    let me = std::process::id() as i32;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| pid_of(n, prefix, form)) else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        if pid != me && process_alive(pid) {
            continue;
        }
        let Ok(Some(_lock)) = lock_dir(&path) else {
            continue;
        };
        make_writable(&path);
        if fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// A private scratch directory `PREFIX{pid}-XXXXXX` in `parent`, locked while it lives and
/// removed when dropped; what killed runs left under the same prefix is removed first.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
    _lock: fs::File,
}

impl ScratchDir {
    /// Create one; also returns the stale directories it removed.
    pub fn new(parent: &Path, prefix: &str) -> io::Result<(ScratchDir, Vec<PathBuf>)> {
        let removed = remove_stale(parent, prefix, Name::PidDash);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}{}-", std::process::id()))
            .tempdir_in(parent)?;
        let lock = lock_dir(dir.path())?
            .ok_or_else(|| io::Error::other("another process holds the lock of a new directory"))?;
        Ok((ScratchDir { dir, _lock: lock }, removed))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_directories_of_our_name_are_removed() {
        let parent = tempfile::tempdir().expect("tempdir");
        // A PID that cannot be running: above the kernel's pid_max limit (2^22).
        let dead = parent.path().join("w-99999999-abc");
        let odd = parent.path().join("w-12x-abc");
        let other = parent.path().join("v-99999999-abc");
        for d in [&dead, &odd, &other] {
            fs::create_dir(d).expect("mkdir");
        }
        let (live, removed) = ScratchDir::new(parent.path(), "w-").expect("scratch");
        assert_eq!(removed, vec![dead.clone()]);
        assert!(odd.exists() && other.exists());
        // A live one (ours, locked) is kept by another run's scan.
        let (second, removed) = ScratchDir::new(parent.path(), "w-").expect("scratch");
        assert!(removed.is_empty(), "{removed:?}");
        assert!(live.path().exists() && second.path().exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
