//! Where an install goes: DEST made absolute, its missing parents created (and removed again
//! when the install fails), DEST empty or absent and not a mount point, its parent a
//! directory. Used by `unpack` and `relocate` alike.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::ArchiveError;

/// Parents of DEST that an unpack created (`mkdir -p`): removed again, deepest first, when
/// the unpack fails, so that a failed unpack leaves the file system as it found it.
pub(crate) struct Parents {
    created: Vec<PathBuf>,
    /// Set when the unpack succeeded: the parents stay.
    pub(crate) keep: bool,
}

impl Drop for Parents {
    fn drop(&mut self) {
        if !self.keep {
            for dir in self.created.iter().rev() {
                // Only an empty directory goes: one somebody else filled meanwhile stays.
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Create the missing parents of `abs` (absolute), as `mkdir -p` does: an HPC destination
/// such as `/gpfs/projects/p123/alice/envs/nlp` often lacks its last directories.
fn make_parents(abs: &Path) -> Result<Parents, ArchiveError> {
    let mut parents = Parents {
        created: Vec::new(),
        keep: false,
    };
    let Some(parent) = abs.parent() else {
        return Ok(parents);
    };
    let mut missing = Vec::new();
    let mut dir = parent;
    while fs::symlink_metadata(dir).is_err() {
        missing.push(dir.to_path_buf());
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => parents.created.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ArchiveError::DestPlace {
                    path: abs.into(),
                    reason: format!("cannot create its parent directory {}: {e}", dir.display()),
                    help: match e.kind() {
                        io::ErrorKind::PermissionDenied => format!(
                            "give a destination in a directory you may write to, or ask for {} to be created",
                            dir.display()
                        ),
                        _ => "give a destination in a directory that exists".into(),
                    },
                })
            }
        }
    }
    Ok(parents)
}

/// DEST made absolute, its missing parents created, and checked: an empty directory (not a
/// mount point) or nothing yet. Returns it, whether it existed, and the parents to remove
/// again on failure.
pub(crate) fn check_dest(dest: &Path) -> Result<(PathBuf, bool, Parents), ArchiveError> {
    let abs = std::path::absolute(dest).map_err(|e| ArchiveError::io("resolving", dest, e))?;
    let parents = make_parents(&abs)?;
    let bad = |reason: String| ArchiveError::Dest {
        path: abs.clone(),
        reason,
    };
    let place = |reason: String, help: String| ArchiveError::DestPlace {
        path: abs.clone(),
        reason,
        help,
    };
    let parent = check_parent(&abs)?;
    let existed = match fs::symlink_metadata(&abs) {
        Ok(m) if m.is_dir() => {
            let mut it = fs::read_dir(&abs).map_err(|e| bad(e.to_string()))?;
            if it.next().is_some() {
                return Err(bad("exists and is not empty".into()));
            }
            if is_mount_point(&abs, parent, &m) {
                return Err(place(
                    "is a mount point: an unpack renames one finished tree into place (all or nothing), and a mount point cannot be replaced".into(),
                    format!(
                        "unpack into a new directory on it, such as {}",
                        abs.join("NAME").display()
                    ),
                ));
            }
            true
        }
        Ok(_) => return Err(bad("exists and is not a directory".into())),
        Err(_) => false,
    };
    Ok((abs, existed, parents))
}

/// The parent of a destination (absolute), which must be an existing directory: said so,
/// with the `mkdir -p` that makes it, rather than as a destination that should not exist.
pub(crate) fn check_parent(abs: &Path) -> Result<&Path, ArchiveError> {
    let place = |reason: String, help: String| ArchiveError::DestPlace {
        path: abs.into(),
        reason,
        help,
    };
    let parent = abs.parent().ok_or_else(|| ArchiveError::Dest {
        path: abs.into(),
        reason: "has no parent directory".into(),
    })?;
    match fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(parent),
        Ok(_) => Err(place(
            format!("its parent {} is not a directory", parent.display()),
            "give a destination inside a directory".into(),
        )),
        Err(_) => Err(place(
            format!("its parent directory {} does not exist", parent.display()),
            format!(
                "create it first (mkdir -p {}), or give a destination in a directory that exists",
                parent.display()
            ),
        )),
    }
}

/// Whether the directory `dir` (metadata `meta`, parent `parent`) is a mount point: on
/// another device than its parent, or listed in `/proc/self/mountinfo` (a bind mount of
/// the parent's own file system). The staging directory sits beside DEST, so the final
/// rename would fail there with EBUSY after all the work, or extract onto the wrong disk.
fn is_mount_point(dir: &Path, parent: &Path, meta: &fs::Metadata) -> bool {
    if fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev()) {
        return true;
    }
    let Ok(real) = fs::canonicalize(dir) else {
        return false;
    };
    let Ok(info) = fs::read("/proc/self/mountinfo") else {
        return false;
    };
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|point| unescape_mountinfo(point) == real.as_os_str().as_bytes())
    })
}

/// A mount point as `/proc/self/mountinfo` writes it: space, tab, newline and backslash as
/// three octal digits after a backslash.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(br"/mnt/with\040space\011tab\134back"),
            b"/mnt/with space\ttab\\back"
        );
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(unescape_mountinfo(br"/a\09x\"), br"/a\09x\");
    }
}
