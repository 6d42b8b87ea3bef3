//! Prefix rewriting: the `RewritePrefix` install step at unpack time, and `airgap relocate`
//! afterwards. The current prefix of every group is recorded in `.airgap/prefixes.toml`, so a
//! tree can be moved again and again (conda-pack's placeholders are gone after the first
//! unpack; ours are not needed any more).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use airgap_plugin_api::{InstallStep, PrefixMode};
use filetime::FileTime;
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::manifest::Manifest;
use crate::progress::{Progress, Unit};

/// Where the prefix state of an unpacked bundle lives, relative to its top folder.
pub const PREFIXES_PATH: &str = ".airgap/prefixes.toml";

/// The prefix state of an unpacked bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrefixState {
    /// One record per `RewritePrefix` step.
    #[serde(default)]
    pub prefix: Vec<PrefixRecord>,
}

/// Where one `RewritePrefix` group stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRecord {
    /// Index of the step in the manifest's `install_steps`.
    pub step: usize,
    /// The directory inside the bundle the prefix stands for.
    pub root: String,
    /// The prefix written in the files at bundle time (its length bounds binary rewrites).
    pub original: String,
    /// The prefix the files hold now.
    pub current: String,
}

/// What a relocation did.
#[derive(Debug, Clone)]
pub struct RelocateReport {
    /// Where the tree is now.
    pub dest: PathBuf,
    /// Files rewritten.
    pub files: u64,
}

/// Find `needle` in `hay` from `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = from;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(k) => {
                i += k;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Replace every occurrence (text files).
pub fn replace_text(data: &[u8], old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let mut at = find(data, old, 0)?;
    let mut out = Vec::with_capacity(data.len());
    let mut from = 0;
    loop {
        out.extend_from_slice(&data[from..at]);
        out.extend_from_slice(new);
        from = at + old.len();
        match find(data, old, from) {
            Some(n) => at = n,
            None => break,
        }
    }
    out.extend_from_slice(&data[from..]);
    Some(out)
}

/// Rewrite every C string that contains `old`, in place, padding with NUL bytes so that the
/// size never changes. A string may grow into the NUL bytes that follow it (left there by an
/// earlier, shorter rewrite). Returns the length of the longest prefix that fits when `new`
/// does not.
pub fn replace_binary(data: &mut [u8], old: &[u8], new: &[u8]) -> Result<bool, usize> {
    let mut changed = false;
    let mut i = 0;
    let mut max_fit = usize::MAX;
    let mut plan: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    while let Some(start) = find(data, old, i) {
        let end = data[start..]
            .iter()
            .position(|&b| b == 0)
            .map(|n| start + n)
            .unwrap_or(data.len());
        let mut nuls = 0;
        while end + nuls < data.len() && data[end + nuls] == 0 {
            nuls += 1;
        }
        let s = &data[start..end];
        let count = {
            let mut c = 0;
            let mut k = 0;
            while let Some(n) = find(s, old, k) {
                c += 1;
                k = n + old.len();
            }
            c
        };
        let replaced = replace_text(s, old, new).unwrap_or_else(|| s.to_vec());
        // Room: the string, then its NUL run, keeping one NUL as terminator (none needed at
        // the very end of the file when there was none).
        let room = if nuls == 0 {
            s.len()
        } else {
            s.len() + nuls - 1
        };
        if replaced.len() > room {
            let spare = room.saturating_sub(s.len() - count * old.len());
            max_fit = max_fit.min(spare / count.max(1));
        } else {
            plan.push((start, end, replaced));
        }
        i = end.max(start + 1);
    }
    if max_fit != usize::MAX {
        return Err(max_fit);
    }
    for (start, end, replaced) in plan {
        let region_end = start + replaced.len().max(end - start);
        data[start..start + replaced.len()].copy_from_slice(&replaced);
        for b in &mut data[start + replaced.len()..region_end] {
            *b = 0;
        }
        changed = true;
    }
    Ok(changed)
}

/// Rewrite `old` to `new` in one file; written beside and renamed, keeping mode and mtime (a
/// hard-linked twin is left alone). `check_only` tests that a binary file can take `new`.
pub(crate) fn rewrite_file(
    path: &Path,
    shown: &str,
    old: &str,
    new: &str,
    mode: PrefixMode,
    check_only: bool,
) -> Result<bool, ArchiveError> {
    let meta = fs::symlink_metadata(path).map_err(|e| ArchiveError::io("reading", path, e))?;
    if !meta.is_file() {
        return Ok(false);
    }
    let mut data = fs::read(path).map_err(|e| ArchiveError::io("reading", path, e))?;
    let out = match mode {
        PrefixMode::Text => {
            if check_only {
                return Ok(false);
            }
            match replace_text(&data, old.as_bytes(), new.as_bytes()) {
                Some(v) => v,
                None => return Ok(false),
            }
        }
        PrefixMode::Binary => match replace_binary(&mut data, old.as_bytes(), new.as_bytes()) {
            Ok(true) => data,
            Ok(false) => return Ok(false),
            Err(spare) => {
                return Err(ArchiveError::PrefixTooLong {
                    file: shown.into(),
                    new: new.into(),
                    max: spare,
                })
            }
        },
    };
    if check_only {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    // A read-only directory (its mode from the bundle) is opened for the rename, then closed.
    let dir_mode = fs::metadata(dir)
        .map(|m| m.permissions().mode())
        .unwrap_or(0o755);
    let reopen = dir_mode & 0o200 == 0;
    if reopen {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode | 0o700));
    }
    let tmp = dir.join(format!(
        ".{}.airgap-rewrite-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&out)?;
        f.set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o7777,
        ))?;
        let t = FileTime::from_last_modification_time(&meta);
        filetime::set_file_handle_times(&f, Some(t), Some(t))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    if reopen {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode));
    }
    result.map_err(|e| ArchiveError::io("rewriting", path, e))?;
    Ok(true)
}

/// `base/root` as a string (the absolute prefix a group stands for).
pub(crate) fn prefix_for(base: &Path, root: &str) -> String {
    let root = root.trim_matches('/');
    let p = if root.is_empty() || root == "." {
        base.to_path_buf()
    } else {
        base.join(root)
    };
    p.to_string_lossy().into_owned()
}

/// The `RewritePrefix` groups of a manifest: (step index, old prefix, root, files).
pub(crate) fn groups(
    manifest: &Manifest,
) -> Vec<(usize, &str, &str, &[airgap_plugin_api::PrefixFile])> {
    manifest
        .install_steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.step {
            InstallStep::RewritePrefix {
                old_prefix,
                root,
                files,
            } => Some((i, old_prefix.as_str(), root.as_str(), files.as_slice())),
            InstallStep::Run { .. } => None,
        })
        .collect()
}

/// Rewrite every group of `state` under `tree` to the prefixes for `base`; returns the new
/// state and the number of files rewritten. `check_only` only tests binary files.
pub(crate) fn rewrite_all(
    manifest: &Manifest,
    state: &PrefixState,
    tree: &Path,
    base: &Path,
    check_only: bool,
    progress: &dyn Progress,
) -> Result<(PrefixState, u64), ArchiveError> {
    let mut new_state = PrefixState::default();
    let mut count = 0;
    for (step, _old, root, files) in groups(manifest) {
        let Some(rec) = state.prefix.iter().find(|r| r.step == step) else {
            continue;
        };
        let new = prefix_for(base, root);
        for f in files {
            if f.mode == PrefixMode::Binary && new.len() > rec.original.len() {
                return Err(ArchiveError::PrefixTooLong {
                    file: f.path.clone(),
                    new,
                    max: rec.original.len(),
                });
            }
        }
        if !check_only {
            progress.begin("rewriting", files.len() as u64, Unit::Items);
        }
        if rec.current != new {
            for f in files {
                crate::read::check_rel(f.path.as_bytes()).map_err(|reason| ArchiveError::Step {
                    index: step + 1,
                    description: "rewrite prefix".into(),
                    reason: format!(
                        "file {:?} is not a plain path inside the bundle ({reason})",
                        f.path
                    ),
                })?;
                if rewrite_file(
                    &tree.join(&f.path),
                    &f.path,
                    &rec.current,
                    &new,
                    f.mode,
                    check_only,
                )? {
                    count += 1;
                }
                if !check_only {
                    progress.advance(1);
                }
            }
        }
        if !check_only {
            progress.end();
        }
        new_state.prefix.push(PrefixRecord {
            step,
            root: root.to_string(),
            original: rec.original.clone(),
            current: new,
        });
    }
    Ok((new_state, count))
}

/// Read `.airgap/prefixes.toml` of an unpacked tree.
pub fn read_state(tree: &Path) -> Result<PrefixState, ArchiveError> {
    let path = tree.join(PREFIXES_PATH);
    let text = fs::read_to_string(&path).map_err(|e| ArchiveError::Dest {
        path: tree.into(),
        reason: format!(
            "cannot read {}: {e} (was it unpacked by airgap?)",
            path.display()
        ),
    })?;
    toml::from_str(&text).map_err(|e| ArchiveError::Dest {
        path: tree.into(),
        reason: format!("{} does not parse: {e}", path.display()),
    })
}

/// Write `.airgap/prefixes.toml` atomically.
pub(crate) fn write_state(tree: &Path, state: &PrefixState) -> Result<(), ArchiveError> {
    let path = tree.join(PREFIXES_PATH);
    let text = toml::to_string(state)
        .map_err(|e| ArchiveError::io("writing", &path, std::io::Error::other(e)))?;
    let tmp = crate::write::TempFile::new(&path)?;
    (&tmp.file)
        .write_all(text.as_bytes())
        .map_err(|e| ArchiveError::io("writing", &tmp.path, e))?;
    tmp.commit(&path)
}

/// Whether `new_dir` can take the tree at `dir` as `unpack` takes a destination: absent, or
/// an empty directory (`rename` replaces it); `true` for the empty directory. A place inside
/// `dir` itself is refused by name (rename's EINVAL says nothing). Returns `new_dir` with
/// its parent resolved: `DIR/../NEW` names nothing once DIR has moved, and the prefixes
/// written into the files must name the real place.
fn check_new_dir(dir: &Path, new_dir: &Path) -> Result<(PathBuf, bool), ArchiveError> {
    let real = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let real_dir = real(dir);
    // The nearest existing ancestor, resolved (`..` and links included): a place under DIR,
    // but not DIR itself (that one is refused below as not empty).
    let mut nearest = new_dir.to_path_buf();
    while fs::symlink_metadata(&nearest).is_err() {
        match nearest.parent() {
            Some(p) => nearest = p.to_path_buf(),
            None => break,
        }
    }
    let nearest_real = real(&nearest);
    let is_dir_itself = nearest == new_dir && nearest_real == real_dir;
    if !is_dir_itself && nearest_real.starts_with(&real_dir) {
        return Err(ArchiveError::DestPlace {
            path: new_dir.into(),
            reason: format!(
                "is inside {}: a tree cannot be moved into itself",
                dir.display()
            ),
            help: "give a NEWDIR outside DIR".into(),
        });
    }
    let parent = crate::unpack::check_parent(new_dir)?;
    let resolved = match new_dir.file_name() {
        Some(name) => real(parent).join(name),
        None => new_dir.to_path_buf(),
    };
    match fs::symlink_metadata(new_dir) {
        Err(_) => Ok((resolved, false)),
        Ok(m) if m.is_dir() => match fs::read_dir(new_dir).map(|mut it| it.next().is_none()) {
            Ok(true) => Ok((resolved, true)),
            _ => Err(ArchiveError::Dest {
                path: new_dir.into(),
                reason: "exists and is not empty".into(),
            }),
        },
        Ok(_) => Err(ArchiveError::Dest {
            path: new_dir.into(),
            reason: "exists and is not a directory".into(),
        }),
    }
}

/// Move an unpacked bundle from `dir` to `new_dir` and rewrite its prefixes for the new place.
/// With `new_dir` `None`, only rewrite (the tree was already moved by other means).
pub fn relocate(
    dir: &Path,
    new_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<RelocateReport, ArchiveError> {
    let dir = std::path::absolute(dir).map_err(|e| ArchiveError::io("resolving", dir, e))?;
    let manifest = crate::manifest::read_manifest(&dir)?;
    let state = read_state(&dir)?;
    let (target, replaced_empty) = match new_dir {
        Some(n) => {
            let n = std::path::absolute(n).map_err(|e| ArchiveError::io("resolving", n, e))?;
            check_new_dir(&dir, &n)?
        }
        None => (dir.clone(), false),
    };
    // Refuse before touching anything when a binary file cannot take the new prefix.
    rewrite_all(&manifest, &state, &dir, &target, true, progress)?;
    if target != dir {
        fs::rename(&dir, &target).map_err(|e| ArchiveError::Dest {
            path: target.clone(),
            reason: if e.raw_os_error() == Some(libc::EXDEV) {
                "is on another file system; copy the tree there (cp -a) and run `airgap relocate NEWDIR` on the copy".into()
            } else {
                format!("cannot move {} there: {e}", dir.display())
            },
        })?;
    }
    match rewrite_all(&manifest, &state, &target, &target, false, progress) {
        Ok((new_state, files)) => {
            write_state(&target, &new_state)?;
            Ok(RelocateReport {
                dest: target,
                files,
            })
        }
        Err(e) => {
            // Put back what was rewritten, then the tree itself.
            let _ = rewrite_all(
                &manifest,
                &state,
                &target,
                &dir,
                false,
                &crate::progress::NoProgress,
            );
            if target != dir && fs::rename(&target, &dir).is_ok() && replaced_empty {
                let _ = fs::create_dir(&target);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binary_shrinks_then_grows_back() {
        let old = b"/opt/placeholder_long_prefix";
        let mut data =
            b"x\0/opt/placeholder_long_prefix/lib:/opt/placeholder_long_prefix/l2\0next\0".to_vec();
        let len = data.len();
        assert_eq!(replace_binary(&mut data, old, b"/d"), Ok(true));
        assert_eq!(data.len(), len);
        assert!(data.starts_with(b"x\0/d/lib:/d/l2\0"));
        // Grow into the padding left by the first rewrite, up to the original length.
        assert_eq!(
            replace_binary(&mut data, b"/d", b"/somewhere/else"),
            Ok(true)
        );
        assert!(data.starts_with(b"x\0/somewhere/else/lib:/somewhere/else/l2\0"));
        assert!(data.ends_with(b"\0next\0"));
        assert!(replace_binary(
            &mut data,
            b"/somewhere/else",
            b"/a/very/long/prefix/that/cannot/fit/at/all"
        )
        .is_err());
    }

    #[test]
    fn text_every_occurrence() {
        assert_eq!(
            replace_text(b"#!/old/bin/python\n/old/x", b"/old", b"/new/p").unwrap(),
            b"#!/new/p/bin/python\n/new/p/x"
        );
    }
}
