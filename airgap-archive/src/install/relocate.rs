//! Prefix rewriting: the `RewritePrefix` install step at unpack time, and `airgap relocate`
//! afterwards. The current prefix of every group is recorded in `.airgap/prefixes.toml`, so a
//! tree can be moved again and again (conda-pack's placeholders are gone after the first
//! unpack; ours are not needed any more).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::format::model::{InstallStep, PrefixFile, PrefixMode};
use filetime::FileTime;
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::format::manifest::Manifest;
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

/// Bytes read at a time when a file is rewritten: its memory is this plus the old prefix,
/// whatever the size of the file (a tiny bundle can carry a huge, compressible file).
pub const WINDOW: usize = 1 << 20;

/// What a streaming rewrite found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// The prefix does not occur: the output is the input (and may be thrown away).
    Unchanged,
    /// At least one occurrence was rewritten.
    Changed,
    /// Binary mode: some C string cannot take the new prefix; the longest prefix that fits
    /// in all of them. The output is incomplete and must be thrown away.
    TooLong(usize),
}

/// Where [`scan`] sends the input: runs of bytes as they are, and each occurrence of the old
/// prefix.
trait Sink {
    fn literal(&mut self, bytes: &[u8]) -> io::Result<()>;
    fn matched(&mut self) -> io::Result<()>;
}

/// Read `input` in windows of `window` bytes and report every occurrence of `old` (leftmost
/// first, not overlapping) to `sink`, with the bytes between them. The last `old.len() - 1`
/// bytes of a window are kept for the next one, so that an occurrence across a window edge is
/// still found. Returns the number of occurrences.
fn scan(input: &mut dyn Read, old: &[u8], window: usize, sink: &mut dyn Sink) -> io::Result<u64> {
    let keep = old.len().saturating_sub(1);
    let window = window.max(1);
    let mut buf: Vec<u8> = Vec::with_capacity(window + keep);
    let mut count = 0;
    loop {
        // Fill up to `keep + window` bytes: at least `window` new ones past what was kept.
        let mut got = buf.len();
        buf.resize(keep + window, 0);
        let mut eof = false;
        while got < buf.len() {
            match input.read(&mut buf[got..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        // An occurrence may start before `safe` only if it lies wholly in the buffer.
        let safe = if eof { buf.len() } else { buf.len() - keep };
        let mut pos = 0;
        while let Some(at) = find(&buf, old, pos) {
            sink.literal(&buf[pos..at])?;
            sink.matched()?;
            count += 1;
            pos = at + old.len();
        }
        let done = safe.max(pos);
        sink.literal(&buf[pos..done])?;
        buf.drain(..done);
        if eof {
            return Ok(count);
        }
    }
}

/// Text mode: every occurrence replaced, whatever the lengths.
struct Replace<'a> {
    out: &'a mut dyn Write,
    new: &'a [u8],
}

impl Sink for Replace<'_> {
    fn literal(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }
    fn matched(&mut self) -> io::Result<()> {
        self.out.write_all(self.new)
    }
}

/// Binary mode: the C strings (runs of non-NUL bytes) that contain the prefix are rewritten,
/// and the NUL bytes after each keep the file's size: a string that shrank is padded with NUL
/// bytes; one that grew takes them from the NUL run that follows it, keeping one as its
/// terminator (none at the very end of the file when there was none). The state is a few
/// counters, so a NUL run or a string of any length costs no memory.
struct Padded<'a> {
    out: &'a mut dyn Write,
    old_len: usize,
    new: &'a [u8],
    /// Occurrences in the current string (the one being read, or the one the current NUL
    /// run follows).
    count: u64,
    /// Bytes of the current string from its first occurrence on.
    from_first: u64,
    /// Length of the rewritten string minus the original.
    delta: i64,
    /// In a NUL run: its length so far, and how many of its NUL bytes the string still takes.
    nuls: Option<(u64, u64)>,
    /// The longest prefix every misfit string could take (`usize::MAX`: none).
    max_fit: usize,
}

impl Padded<'_> {
    /// A string (or the end of the file) follows: the NUL run is over.
    fn end_nuls(&mut self, nuls: u64) {
        if self.count > 0 && self.delta > 0 && nuls <= self.delta as u64 {
            self.misfit(self.from_first + nuls - 1);
        }
        self.count = 0;
        self.from_first = 0;
        self.delta = 0;
    }

    /// The current string does not fit in `room` bytes.
    fn misfit(&mut self, room: u64) {
        let literal = self.from_first - self.count * self.old_len as u64;
        let spare = room.saturating_sub(literal) / self.count;
        self.max_fit = self
            .max_fit
            .min(usize::try_from(spare).unwrap_or(usize::MAX));
    }

    fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        const Z: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(Z.len() as u64) as usize;
            self.out.write_all(&Z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Rewrite> {
        match self.nuls {
            Some((nuls, _)) => self.end_nuls(nuls),
            None if self.count > 0 => {
                if self.delta < 0 {
                    self.zeros(self.delta.unsigned_abs())?;
                } else if self.delta > 0 {
                    self.misfit(self.from_first);
                }
            }
            None => {}
        }
        Ok(if self.max_fit != usize::MAX {
            Rewrite::TooLong(self.max_fit)
        } else {
            Rewrite::Changed
        })
    }
}

impl Sink for Padded<'_> {
    fn literal(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if bytes[0] == 0 {
                let n = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
                let (nuls, take) = match self.nuls {
                    Some(state) => state,
                    None => {
                        // The string ends here: a shorter one is padded up to its old end.
                        if self.count > 0 && self.delta < 0 {
                            self.zeros(self.delta.unsigned_abs())?;
                        }
                        let take = if self.count > 0 && self.delta > 0 {
                            self.delta as u64
                        } else {
                            0
                        };
                        (0, take)
                    }
                };
                let taken = take.min(n as u64);
                self.zeros(n as u64 - taken)?;
                self.nuls = Some((nuls + n as u64, take - taken));
                bytes = &bytes[n..];
            } else {
                let n = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                if let Some((nuls, _)) = self.nuls.take() {
                    self.end_nuls(nuls);
                }
                self.out.write_all(&bytes[..n])?;
                if self.count > 0 {
                    self.from_first += n as u64;
                }
                bytes = &bytes[n..];
            }
        }
        Ok(())
    }

    fn matched(&mut self) -> io::Result<()> {
        if let Some((nuls, _)) = self.nuls.take() {
            self.end_nuls(nuls);
        }
        self.count += 1;
        self.from_first += self.old_len as u64;
        self.delta += self.new.len() as i64 - self.old_len as i64;
        self.out.write_all(self.new)
    }
}

/// Copy `input` to `out` with `old` rewritten to `new` as `mode` says, reading `window` bytes
/// at a time: the same bytes as rewriting the whole file in memory, in bounded memory.
pub fn rewrite_stream(
    input: &mut dyn Read,
    out: &mut dyn Write,
    old: &[u8],
    new: &[u8],
    mode: PrefixMode,
    window: usize,
) -> io::Result<Rewrite> {
    if old.is_empty() {
        return Ok(Rewrite::Unchanged);
    }
    let found = |count: u64| {
        if count > 0 {
            Rewrite::Changed
        } else {
            Rewrite::Unchanged
        }
    };
    match mode {
        PrefixMode::Text => {
            let count = scan(input, old, window, &mut Replace { out, new })?;
            Ok(found(count))
        }
        // No C string holds a NUL byte, so no string contains such a prefix: the file stays as
        // it is (but counts as rewritten when the bytes occur, as it always has).
        PrefixMode::Binary if old.contains(&0) => {
            let count = scan(input, old, window, &mut Replace { out, new: old })?;
            Ok(found(count))
        }
        PrefixMode::Binary => {
            let mut sink = Padded {
                out,
                old_len: old.len(),
                new,
                count: 0,
                from_first: 0,
                delta: 0,
                nuls: None,
                max_fit: usize::MAX,
            };
            let count = scan(input, old, window, &mut sink)?;
            let result = sink.finish()?;
            Ok(if count == 0 {
                Rewrite::Unchanged
            } else {
                result
            })
        }
    }
}

/// The room a binary file has for a group's prefix, as the error explains it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The longest prefix the file takes.
    max: usize,
    /// Bytes of the new prefix after the destination (`/env`).
    tail: usize,
    /// `max` is the capacity the plugin recorded (a padded placeholder).
    padded: bool,
}

impl Slot {
    /// The slot of `file`, bundled with the prefix `original`, for the prefix `new` under
    /// `base`: the capacity the manifest records, else the original prefix's length (a
    /// string may grow back into the NUL bytes an earlier, shorter rewrite left, no more).
    pub(crate) fn of(file: &PrefixFile, original: &str, new: &str, base: &Path) -> Slot {
        let base_len = base.as_os_str().len();
        Slot {
            max: file.capacity.unwrap_or(original.len()).max(original.len()),
            tail: new.len().saturating_sub(base_len),
            padded: file.capacity.is_some(),
        }
    }

    fn too_long(self, file: &str, new: &str, max: usize) -> ArchiveError {
        ArchiveError::PrefixTooLong {
            file: file.into(),
            new: new.into(),
            max,
            tail: self.tail,
            padded: self.padded,
        }
    }
}

/// Refuse, before anything is written, the first binary file of a group (bundled with
/// `original`) whose slot cannot take `new` (the prefix for `base`). What the manifest
/// records is a claim: the rewrite itself ([`rewrite_stream`]) still refuses a string whose
/// NUL bytes do not suffice.
pub(crate) fn check_fits(
    files: &[PrefixFile],
    original: &str,
    new: &str,
    base: &Path,
) -> Result<(), ArchiveError> {
    for f in files.iter().filter(|f| f.mode == PrefixMode::Binary) {
        let slot = Slot::of(f, original, new, base);
        if new.len() > slot.max {
            return Err(slot.too_long(&f.path, new, slot.max));
        }
    }
    Ok(())
}

/// Rewrite `old` to `new` in one file; written beside and renamed, keeping mode and mtime (a
/// hard-linked twin is left alone). `check_only` tests that a binary file can take `new`;
/// `slot` explains a refusal. The file is streamed ([`rewrite_stream`]), never held in memory.
pub(crate) fn rewrite_file(
    path: &Path,
    shown: &str,
    old: &str,
    new: &str,
    mode: PrefixMode,
    slot: Slot,
    check_only: bool,
) -> Result<bool, ArchiveError> {
    let meta = fs::symlink_metadata(path).map_err(|e| ArchiveError::io("reading", path, e))?;
    if !meta.is_file() {
        return Ok(false);
    }
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ArchiveError::io("reading", path, e))?;
    let too_long = |max: usize| slot.too_long(shown, new, max);
    if check_only {
        if mode == PrefixMode::Text {
            return Ok(false);
        }
        let found = rewrite_stream(
            &mut input,
            &mut io::sink(),
            old.as_bytes(),
            new.as_bytes(),
            mode,
            WINDOW,
        )
        .map_err(|e| ArchiveError::io("reading", path, e))?;
        return match found {
            Rewrite::TooLong(max) => Err(too_long(max)),
            Rewrite::Changed | Rewrite::Unchanged => Ok(false),
        };
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    // A read-only directory (its mode from the bundle) is opened for the rename, then closed;
    // its time is put back after it, so that a relocated tree keeps the bundle's times.
    let dir_meta = fs::metadata(dir).ok();
    let dir_mode = dir_meta
        .as_ref()
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
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut out = io::BufWriter::with_capacity(1 << 16, f);
        let found = rewrite_stream(
            &mut input,
            &mut out,
            old.as_bytes(),
            new.as_bytes(),
            mode,
            WINDOW,
        )?;
        if found != Rewrite::Changed {
            return Ok(found);
        }
        let f = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.set_permissions(fs::Permissions::from_mode(
            meta.permissions().mode() & 0o7777,
        ))?;
        let t = FileTime::from_last_modification_time(&meta);
        filetime::set_file_handle_times(&f, Some(t), Some(t))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(found)
    })();
    if !matches!(result, Ok(Rewrite::Changed)) {
        let _ = fs::remove_file(&tmp);
    }
    if let Some(m) = &dir_meta {
        let t = FileTime::from_last_modification_time(m);
        let _ = filetime::set_file_mtime(dir, t);
    }
    if reopen {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode));
    }
    match result.map_err(|e| ArchiveError::io("rewriting", path, e))? {
        Rewrite::Changed => Ok(true),
        Rewrite::Unchanged => Ok(false),
        Rewrite::TooLong(max) => Err(too_long(max)),
    }
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
) -> Vec<(usize, &str, &str, &[crate::format::model::PrefixFile])> {
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
        check_fits(files, &rec.original, &new, base)?;
        if !check_only {
            progress.begin("rewriting", files.len() as u64, Unit::Items);
        }
        if rec.current != new {
            for f in files {
                crate::format::manifest::check_rel(f.path.as_bytes()).map_err(|reason| {
                    ArchiveError::Step {
                        index: step + 1,
                        description: "rewrite prefix".into(),
                        reason: format!(
                            "file {:?} is not a plain path inside the bundle ({reason})",
                            f.path
                        ),
                    }
                })?;
                if rewrite_file(
                    &tree.join(&f.path),
                    &f.path,
                    &rec.current,
                    &new,
                    f.mode,
                    Slot::of(f, &rec.original, &new, base),
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
    let tmp = crate::output::TempFile::new(&path)?;
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
    let parent = crate::install::dest::check_parent(new_dir)?;
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
    // Only the metadata (the install steps) is needed: the records stay on disk.
    let manifest = crate::install::read::open_manifest(&dir)?.meta;
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

    /// The rewrite as it was before it streamed (whole file in memory), kept as the oracle:
    /// the streaming one must give exactly these bytes.
    mod in_memory {
        use super::super::find;

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
    }

    fn stream(
        data: &[u8],
        old: &[u8],
        new: &[u8],
        mode: PrefixMode,
        window: usize,
    ) -> (Rewrite, Vec<u8>) {
        let mut out = Vec::new();
        let r = rewrite_stream(&mut &data[..], &mut out, old, new, mode, window).unwrap();
        (r, out)
    }

    /// What the in-memory rewrite gives, in the streaming one's terms.
    fn oracle(data: &[u8], old: &[u8], new: &[u8], mode: PrefixMode) -> (Rewrite, Vec<u8>) {
        match mode {
            PrefixMode::Text => match in_memory::replace_text(data, old, new) {
                Some(v) => (Rewrite::Changed, v),
                None => (Rewrite::Unchanged, data.to_vec()),
            },
            PrefixMode::Binary => {
                let mut v = data.to_vec();
                match in_memory::replace_binary(&mut v, old, new) {
                    Ok(true) => (Rewrite::Changed, v),
                    Ok(false) => (Rewrite::Unchanged, v),
                    Err(max) => (Rewrite::TooLong(max), Vec::new()),
                }
            }
        }
    }

    /// The streaming rewrite against the in-memory one; the output only counts when it is
    /// used (not for a prefix too long).
    fn same_as_in_memory(data: &[u8], old: &[u8], new: &[u8], mode: PrefixMode, window: usize) {
        let (want, want_bytes) = oracle(data, old, new, mode);
        let (got, got_bytes) = stream(data, old, new, mode, window);
        assert_eq!(
            got, want,
            "{mode:?} window {window} old {old:?} new {new:?} data {data:?}"
        );
        if !matches!(want, Rewrite::TooLong(_)) {
            assert_eq!(
                got_bytes, want_bytes,
                "{mode:?} window {window} old {old:?} new {new:?} data {data:?}"
            );
        }
    }

    #[test]
    fn binary_shrinks_then_grows_back() {
        let old = b"/opt/placeholder_long_prefix";
        let data =
            b"x\0/opt/placeholder_long_prefix/lib:/opt/placeholder_long_prefix/l2\0next\0".to_vec();
        let (r, data2) = stream(&data, old, b"/d", PrefixMode::Binary, 7);
        assert_eq!(r, Rewrite::Changed);
        assert_eq!(data2.len(), data.len());
        assert!(data2.starts_with(b"x\0/d/lib:/d/l2\0"));
        // Grow into the padding left by the first rewrite, up to the original length.
        let (r, data3) = stream(&data2, b"/d", b"/somewhere/else", PrefixMode::Binary, 5);
        assert_eq!(r, Rewrite::Changed);
        assert!(data3.starts_with(b"x\0/somewhere/else/lib:/somewhere/else/l2\0"));
        assert!(data3.ends_with(b"\0next\0"));
        let (r, _) = stream(
            &data3,
            b"/somewhere/else",
            b"/a/very/long/prefix/that/cannot/fit/at/all",
            PrefixMode::Binary,
            WINDOW,
        );
        assert!(matches!(r, Rewrite::TooLong(_)));
    }

    #[test]
    fn text_every_occurrence() {
        let (r, out) = stream(
            b"#!/old/bin/python\n/old/x",
            b"/old",
            b"/new/p",
            PrefixMode::Text,
            3,
        );
        assert_eq!(r, Rewrite::Changed);
        assert_eq!(out, b"#!/new/p/bin/python\n/new/p/x");
    }

    /// A prefix that straddles the edge of a read window, at every offset, in both modes: found
    /// only because the window keeps `old.len() - 1` bytes for the next.
    #[test]
    fn a_prefix_across_a_window_edge_is_rewritten() {
        let old = b"/build/prefix";
        let window = 64;
        for mode in [PrefixMode::Text, PrefixMode::Binary] {
            for at in window - old.len()..=window {
                let mut data = vec![b'x'; at];
                data.extend_from_slice(old);
                data.extend_from_slice(b"/lib\0\0\0\0\0\0\0\0tail");
                let (r, out) = stream(&data, old, b"/dest/p", mode, window);
                assert_eq!(r, Rewrite::Changed, "{mode:?} at {at}");
                assert_eq!(&out[at..at + 11], b"/dest/p/lib", "{mode:?} at {at}");
                same_as_in_memory(&data, old, b"/dest/p", mode, window);
                same_as_in_memory(&data, old, b"/a/longer/dest/p", mode, window);
            }
        }
    }

    /// Random inputs over a small alphabet (so that prefixes, partial prefixes and NUL runs
    /// are frequent), every window size from 1: the streaming rewrite gives the in-memory
    /// rewrite's bytes and verdict.
    #[test]
    fn streaming_gives_the_in_memory_bytes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"/pa\0\0x";
        let olds: [&[u8]; 5] = [b"/pa", b"/p/pa", b"p", b"/pa/pa", b"a\0/"];
        let news: [&[u8]; 5] = [b"", b"/q", b"/pa", b"/longer/one", b"/p"];
        for _ in 0..3000 {
            let len = (next() % 80) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let old = olds[(next() % olds.len() as u64) as usize];
            let new = news[(next() % news.len() as u64) as usize];
            let window = 1 + (next() % 12) as usize;
            for mode in [PrefixMode::Text, PrefixMode::Binary] {
                same_as_in_memory(&data, old, new, mode, window);
                same_as_in_memory(&data, old, new, mode, 4096);
            }
        }
    }
}
