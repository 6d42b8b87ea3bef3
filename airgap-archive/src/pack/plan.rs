//! Turning the plugins' entries into the exact list of bundle paths: walking directories,
//! deciding for every symbolic link whether to keep it or store what it points to, and
//! refusing two different contents at one path.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::pack::entry::{Entry, EntryKind, PlannedFile, PlannedKind};

use crate::error::ArchiveError;
use crate::format::manifest::link_stays_inside;
use crate::progress::{Progress, Unit};
use crate::spill::{self, put_bytes, put_u32, put_u64, Decoder, Record, Stack, TapeReader};

/// Top-level names the bundle reserves for itself.
pub const RESERVED: &[&str] = &[".airgap", "unpack"];

/// How the plan treats what it cannot follow, and how much it keeps in memory.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Leave out dangling links and link loops with a warning instead of failing.
    pub drop_dangling: bool,
    /// Paths kept in memory before the plan moves them to a sorted run on disk (0: the
    /// default, 16,384). A smaller number costs time, never a different bundle.
    pub memory_paths: usize,
    /// Where plugins write the files they make during this run (rewritten copies, grafted
    /// libraries, downloaded wheels): the mtime of anything under it is the time of the
    /// build, so it is replaced by [`PlanOptions::generated_mtime`] to keep bundles
    /// reproducible.
    pub work_dir: Option<PathBuf>,
    /// The mtime given to files under `work_dir` (`SOURCE_DATE_EPOCH`, else 0).
    pub generated_mtime: u64,
    /// Files this run writes, as (device, inode), where they exist already (the bundle of an
    /// earlier run at `-o`, its `.sha256` and `.minisig`, a killed run's `.partial`): a
    /// directory walk leaves them out with a warning, as GNU tar leaves out its own archive
    /// ("file is the archive; not dumped"), so that an output inside a bundled tree never
    /// carries the previous bundle into the next. Named on their own, they stay refused.
    pub own_output: Vec<(u64, u64)>,
}

/// Records between two entries of a run's index: a look-up reads at most this many.
const INDEX_EVERY: u64 = 128;

/// What a bundle path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A regular file read from `source` when the bundle is written.
    File {
        source: Source,
        size: u64,
    },
    Dir,
    /// A link stored as a link, target relative to the link's directory.
    Symlink {
        target: Vec<u8>,
    },
}

/// Where a file's content is on the build machine. Files found by walking share their
/// directory's path, and their name is the last component of their bundle path (memory per
/// file bounds what a 100,000-file environment costs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `dir/NAME`, NAME being the file name of the bundle path.
    InDir(Arc<Path>),
    /// Any other path.
    Path(Box<Path>),
}

impl Source {
    /// The full path of the file planned at bundle path `at`.
    pub(crate) fn path(&self, at: &[u8]) -> std::borrow::Cow<'_, Path> {
        match self {
            Source::InDir(dir) => {
                let name = at.rsplit(|&b| b == b'/').next().unwrap_or(at);
                std::borrow::Cow::Owned(dir.join(OsStr::from_bytes(name)))
            }
            Source::Path(p) => std::borrow::Cow::Borrowed(p),
        }
    }
}

/// One planned bundle path.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub kind: ItemKind,
    pub mode: u32,
    pub mtime: u64,
    pub plugin: Arc<str>,
    /// Shared by every path of one entry.
    pub package: Option<Arc<str>>,
    /// (device, inode) of what sits at the source, to recognise link targets and hard links.
    pub id: Option<(u64, u64)>,
    /// The [`Plan::add`] call that last set it (what that call returns).
    pub gen: u32,
    /// Its entry may replace what an earlier one put at this path.
    pub replace: bool,
    /// A directory made because something was planned inside it.
    pub implicit: bool,
}

/// Every path of the bundle, built plugin by plugin. The newest paths are kept in memory;
/// beyond [`PlanOptions::memory_paths`] they move to sorted runs on disk, which are merged
/// (and their paths checked against each other) at the end of every [`Plan::extend`]: memory
/// stays flat however many paths the bundle has.
#[derive(Debug, Default)]
pub struct Plan {
    options: PlanOptions,
    /// The newest paths, checked against each other (not against `runs`).
    items: BTreeMap<Vec<u8>, Item>,
    /// Older paths on disk, oldest first; a single one after each [`Plan::extend`].
    runs: Vec<Run>,
    /// Paths planned, as of the end of the last [`Plan::extend`].
    count: usize,
    warnings: Vec<String>,
    /// Directories walked so far (canonical source -> bundle path), to keep links into them.
    roots: Vec<(PathBuf, Vec<u8>)>,
    /// The plugin being added, shared by all its items (one allocation, not one per file).
    shared_plugin: Option<Arc<str>>,
    /// Number of [`Plan::add`] calls so far.
    gen: u32,
    /// The last directory a file entry was resolved in, and its canonical path: a source
    /// names one file an entry, mostly in the directory of the one before (see
    /// [`Plan::canonical_file`]).
    last_dir: Option<(PathBuf, PathBuf)>,
}

/// A link found while walking, decided once the walk is complete.
struct PendingLink {
    disk: PathBuf,
    dest: Vec<u8>,
    mode: Option<u32>,
    package: Option<Arc<str>>,
    replace: bool,
    /// Canonical directories being walked through links above this one (loop guard).
    chain: Vec<PathBuf>,
}

impl Record for PendingLink {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.disk.as_os_str().as_bytes());
        put_bytes(out, &self.dest);
        let flags = u8::from(self.mode.is_some())
            | u8::from(self.package.is_some()) << 1
            | u8::from(self.replace) << 2;
        out.push(flags);
        put_u32(out, self.mode.unwrap_or(0));
        if let Some(package) = &self.package {
            put_bytes(out, package.as_bytes());
        }
        put_u32(out, self.chain.len() as u32);
        for dir in &self.chain {
            put_bytes(out, dir.as_os_str().as_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        let path = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
        let disk = path(d.bytes()?);
        let dest = d.bytes()?.to_vec();
        let flags = d.u8()?;
        let mode = d.u32()?;
        let package = if flags & 2 != 0 {
            let text = std::str::from_utf8(d.bytes()?).map_err(|_| spill::corrupt())?;
            Some(Arc::from(text))
        } else {
            None
        };
        let mut chain = Vec::new();
        for _ in 0..d.u32()? {
            chain.push(path(d.bytes()?));
        }
        Ok(PendingLink {
            disk,
            dest,
            mode: (flags & 1 != 0).then_some(mode),
            package,
            replace: flags & 4 != 0,
            chain,
        })
    }
}

/// The `exclude` patterns of a path entry, in airgap's one dialect ([`airgap_glob`]).
struct Excludes(airgap_glob::Patterns);

impl Excludes {
    fn new(plugin: &str, patterns: &[String]) -> Result<Excludes, ArchiveError> {
        airgap_glob::Patterns::new(patterns)
            .map(Excludes)
            .map_err(|e| ArchiveError::InvalidGlob {
                plugin: plugin.into(),
                pattern: e.pattern,
                reason: e.reason,
            })
    }

    /// The walk prunes an excluded directory, so only the path itself is asked about.
    fn excluded(&self, rel: &Path) -> bool {
        self.0.matches(&rel.to_string_lossy())
    }
}

/// `a/b` + `c` with byte paths.
fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        name.to_vec()
    } else {
        let mut v = Vec::with_capacity(base.len() + 1 + name.len());
        v.extend_from_slice(base);
        v.push(b'/');
        v.extend_from_slice(name);
        v
    }
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(n) => &path[..n],
        None => b"",
    }
}

/// Whether a link's resolved target is one a dereferencing walk must never enter: `/` (the
/// whole machine), a directory under `/dev`, or anything under `/proc` or `/sys` (virtual
/// files whose sizes lie, trees without end). A link to `/dev/null` stays a warning: it is
/// not a regular file, so it is left out without being read.
fn leads_to_system(canonical: &Path, is_dir: bool) -> bool {
    canonical == Path::new("/")
        || canonical.starts_with("/proc")
        || canonical.starts_with("/sys")
        || (is_dir && canonical.starts_with("/dev"))
}

/// Lexically normalise an absolute path (`.` and `..` resolved without touching the disk).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// The relative link from the directory `from_dir` to `to` (both bundle paths).
pub(crate) fn relative(from_dir: &[u8], to: &[u8]) -> Vec<u8> {
    let a: Vec<&[u8]> = from_dir
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let b: Vec<&[u8]> = to.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<&[u8]> = Vec::new();
    parts.extend(std::iter::repeat_n(b"..".as_slice(), a.len() - common));
    parts.extend_from_slice(&b[common..]);
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

/// Check a bundle path given by a plugin and return it in canonical form (no `./`, no
/// trailing `/`). The empty path is the bundle's top folder.
pub(crate) fn clean_dest(plugin: &str, dest: &str) -> Result<Vec<u8>, ArchiveError> {
    let bad = |reason: &str| ArchiveError::InvalidDest {
        plugin: plugin.into(),
        path: dest.into(),
        reason: reason.into(),
    };
    if dest.starts_with('/') {
        return Err(bad(
            "it is absolute; bundle paths are relative to the top folder",
        ));
    }
    if dest.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for c in dest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad("it contains `..`")),
            c => parts.push(c),
        }
    }
    if let Some(first) = parts.first() {
        if RESERVED.contains(first) {
            return Err(bad("this name is reserved for airgap itself"));
        }
    }
    Ok(parts.join("/").into_bytes())
}

fn mtime_of(meta: &fs::Metadata) -> u64 {
    u64::try_from(meta.mtime()).unwrap_or(0)
}

fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

impl Plan {
    /// An empty plan.
    pub fn new(options: PlanOptions) -> Plan {
        let mut options = options;
        // Paths are compared as the walk finds them: canonical.
        options.work_dir = options
            .work_dir
            .map(|dir| fs::canonicalize(&dir).unwrap_or(dir));
        Plan {
            options,
            ..Plan::default()
        }
    }

    /// The mtime to store for `path`: its own, unless a plugin made it during this run.
    fn mtime_of(&self, path: &Path, meta: &fs::Metadata) -> u64 {
        match &self.options.work_dir {
            Some(dir) if path.starts_with(dir) => self.options.generated_mtime,
            _ => mtime_of(meta),
        }
    }

    /// Warnings collected so far (dropped links, stripped setuid bits, skipped special files).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of bundle paths planned (as of the end of the last [`Plan::extend`]).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Nothing planned yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every planned path, sorted by path.
    pub fn files(&self) -> Result<Vec<PlannedFile>, ArchiveError> {
        self.iter_files().collect()
    }

    /// Every planned path, sorted by path, one at a time: a large plan is on disk, and the
    /// `Vec` of [`Plan::files`] alone costs tens of MB for 100,000 files.
    pub fn iter_files(&self) -> impl Iterator<Item = Result<PlannedFile, ArchiveError>> + '_ {
        self.entries().map(|r| r.map(|(p, i)| bundle_file(&p, &i)))
    }

    /// Every planned path with its item, sorted by path: the layers merged, newest last.
    pub(crate) fn entries(&self) -> Entries<'_> {
        let mut layers: Vec<Layer<'_>> = self
            .runs
            .iter()
            .map(|run| Layer::Disk(TapeReader::new(&run.file, 0, run.len)))
            .collect();
        layers.push(Layer::Memory(self.items.iter()));
        Entries::new(layers)
    }

    /// Resolve one plugin's entries into bundle paths. Returns the records this call added or
    /// replaced (later plugins receive them as `request.earlier`).
    pub fn add(
        &mut self,
        plugin: &str,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> Result<Vec<PlannedFile>, ArchiveError> {
        self.extend(plugin, entries, progress)?;
        let gen = self.gen;
        self.entries()
            .filter(|r| r.as_ref().map_or(true, |(_, i)| i.gen == gen))
            .map(|r| r.map(|(p, i)| bundle_file(&p, &i)))
            .collect()
    }

    /// What the last [`Plan::add`]/[`Plan::extend`] call put at `path` (a bundle path), if
    /// anything: the host checks a plugin's claims about its own files with it.
    pub fn added_last(&self, path: &str) -> Result<Option<PlannedKind>, ArchiveError> {
        let Some(item) = self.get(path.as_bytes())? else {
            return Ok(None);
        };
        Ok((item.gen == self.gen).then(|| match &item.kind {
            ItemKind::File { .. } => PlannedKind::File,
            ItemKind::Dir => PlannedKind::Dir,
            ItemKind::Symlink { target } => PlannedKind::Symlink {
                target: display(target),
            },
        }))
    }

    /// What is planned at `path`, all layers resolved.
    fn get(&self, path: &[u8]) -> Result<Option<Item>, ArchiveError> {
        let mut found: Option<Item> = None;
        for run in &self.runs {
            if let Some(older) = run.get(path).map_err(scratch_error)? {
                found = Some(match found {
                    None => older,
                    Some(old) => settle(path, old, older)?,
                });
            }
        }
        if let Some(newest) = self.items.get(path) {
            found = Some(match found {
                None => newest.clone(),
                Some(old) => settle(path, old, newest.clone())?,
            });
        }
        Ok(found)
    }

    /// [`Plan::add`] without the records: returns how many paths this call added or replaced
    /// (a record per path costs hundreds of bytes; a 100,000-file source does not need them).
    ///
    /// `entries` are taken one at a time, by reference or by value: the host converts a
    /// plugin's entries on the way in, never into a second list.
    pub fn extend<E: std::borrow::Borrow<Entry>>(
        &mut self,
        plugin: &str,
        entries: impl IntoIterator<Item = E>,
        progress: &dyn Progress,
    ) -> Result<usize, ArchiveError> {
        progress.begin(&format!("scanning {plugin}"), 0, Unit::Items);
        self.shared_plugin = Some(Arc::from(plugin));
        self.gen += 1;
        let mut pending = Stack::new(self.budget());
        let result = (|| {
            for entry in entries {
                if progress.is_cancelled() {
                    return Err(ArchiveError::Cancelled);
                }
                self.add_entry(plugin, entry.borrow(), &mut pending, progress)?;
            }
            while let Some(link) = pending.pop().map_err(scratch_error)? {
                if progress.is_cancelled() {
                    return Err(ArchiveError::Cancelled);
                }
                self.resolve_link(plugin, link, &mut pending, progress)?;
            }
            Ok(())
        })();
        progress.end();
        result?;
        let gen = self.gen;
        if self.runs.is_empty() {
            self.count = self.items.len();
            return Ok(self.items.values().filter(|i| i.gen == gen).count());
        }
        // Merge every layer into one run, checking the paths of the layers against each
        // other (two contents at one path, a file where a directory is needed).
        let mut merged = RunWriter::new().map_err(scratch_error)?;
        let (mut count, mut added) = (0, 0);
        {
            for entry in self.entries() {
                let (path, item) = entry?;
                count += 1;
                if item.gen == gen {
                    added += 1;
                }
                merged.push(path, item).map_err(scratch_error)?;
            }
        }
        self.runs = vec![merged.finish().map_err(scratch_error)?];
        self.items.clear();
        self.count = count;
        Ok(added)
    }

    /// Move the paths in memory to a sorted run on disk.
    fn spill(&mut self) -> Result<(), ArchiveError> {
        let mut run = RunWriter::new().map_err(scratch_error)?;
        for (path, item) in std::mem::take(&mut self.items) {
            run.push(path, item).map_err(scratch_error)?;
        }
        self.runs.push(run.finish().map_err(scratch_error)?);
        Ok(())
    }

    fn add_entry(
        &mut self,
        plugin: &str,
        entry: &Entry,
        pending: &mut Stack<PendingLink>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        let dest = clean_dest(plugin, &entry.dest)?;
        match &entry.kind {
            EntryKind::Dir => {
                if dest.is_empty() {
                    return Ok(());
                }
                let item = Item {
                    kind: ItemKind::Dir,
                    mode: entry.mode.unwrap_or(0o755) & 0o1777,
                    mtime: 0,
                    plugin: plugin.into(),
                    package: entry.package.as_deref().map(Arc::from),
                    id: None,
                    gen: 0,
                    replace: false,
                    implicit: false,
                };
                self.insert(plugin, dest, item, entry.replace)
            }
            EntryKind::Symlink { target } => {
                if dest.is_empty() {
                    return Err(ArchiveError::InvalidDest {
                        plugin: plugin.into(),
                        path: entry.dest.clone(),
                        reason: "the top folder cannot be a link".into(),
                    });
                }
                if !link_stays_inside(parent(&dest), target.as_bytes()) {
                    return Err(ArchiveError::InvalidDest {
                        plugin: plugin.into(),
                        path: entry.dest.clone(),
                        reason: format!("link target {target:?} leaves the bundle"),
                    });
                }
                let item = Item {
                    kind: ItemKind::Symlink {
                        target: target.as_bytes().to_vec(),
                    },
                    mode: 0o777,
                    mtime: 0,
                    plugin: plugin.into(),
                    package: entry.package.as_deref().map(Arc::from),
                    id: None,
                    gen: 0,
                    replace: false,
                    implicit: false,
                };
                self.insert(plugin, dest, item, entry.replace)
            }
            EntryKind::Path { source, exclude } => {
                let excludes = Excludes::new(plugin, exclude)?;
                let package: Option<Arc<str>> = entry.package.as_deref().map(Arc::from);
                // One `lstat` for what is not a link (most entries), links followed otherwise.
                let (meta, link) = match fs::symlink_metadata(source) {
                    Ok(m) if !m.file_type().is_symlink() => (m, false),
                    _ => match fs::metadata(source) {
                        Ok(m) => (m, true),
                        Err(e) => return Err(self.link_error(source, e)),
                    },
                };
                if meta.is_dir() {
                    let canonical = fs::canonicalize(source)
                        .map_err(|e| ArchiveError::io("resolving", source, e))?;
                    if !dest.is_empty() {
                        let item = Item {
                            kind: ItemKind::Dir,
                            mode: entry.mode.unwrap_or(meta.mode()) & 0o1777,
                            mtime: self.mtime_of(&canonical, &meta),
                            plugin: plugin.into(),
                            package: package.clone(),
                            id: Some((meta.dev(), meta.ino())),
                            gen: 0,
                            replace: false,
                            implicit: false,
                        };
                        self.insert(plugin, dest.clone(), item, entry.replace)?;
                    }
                    let walk = Walk {
                        plugin,
                        package: &package,
                        replace: entry.replace,
                        excludes: &excludes,
                        root: &canonical,
                        chain: vec![canonical.clone()],
                    };
                    self.walk(&walk, &canonical, &dest, pending, progress)
                } else if dest.is_empty() {
                    Err(ArchiveError::InvalidDest {
                        plugin: plugin.into(),
                        path: entry.dest.clone(),
                        reason: "a file needs a name inside the bundle".into(),
                    })
                } else {
                    let canonical = self
                        .canonical_file(source, link)
                        .map_err(|e| ArchiveError::io("resolving", source, e))?;
                    self.add_file(
                        plugin,
                        &canonical,
                        None,
                        &meta,
                        dest,
                        entry.mode,
                        &package,
                        entry.replace,
                    )
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_file(
        &mut self,
        plugin: &str,
        source: &Path,
        shared: Option<Source>,
        meta: &fs::Metadata,
        dest: Vec<u8>,
        mode: Option<u32>,
        package: &Option<Arc<str>>,
        replace: bool,
    ) -> Result<(), ArchiveError> {
        if !meta.is_file() {
            self.warnings.push(format!(
                "{} is not a regular file, directory or link: left out",
                source.display()
            ));
            return Ok(());
        }
        let mut bits = mode.unwrap_or(meta.mode()) & 0o7777;
        if bits & 0o7000 != 0 {
            self.warnings.push(format!(
                "{}: setuid, setgid and sticky bits dropped",
                source.display()
            ));
            bits &= 0o777;
        }
        let item = Item {
            kind: ItemKind::File {
                source: shared.unwrap_or_else(|| Source::Path(source.into())),
                size: meta.len(),
            },
            mode: bits,
            mtime: self.mtime_of(source, meta),
            plugin: plugin.into(),
            package: package.clone(),
            id: Some((meta.dev(), meta.ino())),
            gen: 0,
            replace: false,
            implicit: false,
        };
        self.insert(plugin, dest, item, replace)
    }

    /// What `fs::canonicalize` gives for a file `source`, where `link` says whether its
    /// last component is a link: for one that is not, its directory's canonical path (kept
    /// from the entry before when it is the same directory) joined with its name. A
    /// `realpath` per file reads every component of its path as a link again: with a
    /// source's 50,000 files, half a second of the host's plan.
    fn canonical_file(&mut self, source: &Path, link: bool) -> io::Result<PathBuf> {
        let (Some(dir), Some(name), false) = (source.parent(), source.file_name(), link) else {
            return fs::canonicalize(source);
        };
        if !source.is_absolute() {
            return fs::canonicalize(source);
        }
        match &self.last_dir {
            Some((d, canonical)) if d == dir => Ok(canonical.join(name)),
            _ => {
                let canonical = fs::canonicalize(dir)?;
                let file = canonical.join(name);
                self.last_dir = Some((dir.to_path_buf(), canonical));
                Ok(file)
            }
        }
    }

    fn link_error(&self, path: &Path, e: io::Error) -> ArchiveError {
        if e.raw_os_error() == Some(libc::ELOOP) {
            ArchiveError::LinkLoop { path: path.into() }
        } else if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_ok() {
            ArchiveError::DanglingLink {
                path: path.into(),
                target: fs::read_link(path).unwrap_or_default(),
            }
        } else {
            ArchiveError::io("reading", path, e)
        }
    }

    fn walk(
        &mut self,
        w: &Walk<'_>,
        dir: &Path,
        dest: &[u8],
        pending: &mut Stack<PendingLink>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        // Only the top of each walk is a root: sub-directories are found under it.
        if dir == w.root && !self.roots.iter().any(|(r, d)| r == dir && d == dest) {
            self.roots.push((dir.to_path_buf(), dest.to_vec()));
        }
        let mut children: Vec<_> = fs::read_dir(dir)
            .map_err(|e| ArchiveError::io("listing", dir, e))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| ArchiveError::io("listing", dir, e))?;
        children.sort();
        let mut shared_dir: Option<Arc<Path>> = None;
        for path in children {
            if progress.is_cancelled() {
                return Err(ArchiveError::Cancelled);
            }
            let rel = path.strip_prefix(w.root).unwrap_or(&path);
            if w.excludes.excluded(rel) {
                continue;
            }
            let name = path.file_name().unwrap_or(OsStr::new("")).as_bytes();
            let child_dest = join(dest, name);
            let meta =
                fs::symlink_metadata(&path).map_err(|e| ArchiveError::io("reading", &path, e))?;
            progress.advance(1);
            let ft = meta.file_type();
            if ft.is_symlink() {
                pending
                    .push(PendingLink {
                        disk: path,
                        dest: child_dest,
                        mode: None,
                        package: w.package.clone(),
                        replace: w.replace,
                        chain: w.chain.clone(),
                    })
                    .map_err(scratch_error)?;
            } else if ft.is_dir() {
                let item = Item {
                    kind: ItemKind::Dir,
                    mode: meta.mode() & 0o1777,
                    mtime: self.mtime_of(&path, &meta),
                    plugin: w.plugin.into(),
                    package: w.package.clone(),
                    id: Some((meta.dev(), meta.ino())),
                    gen: 0,
                    replace: false,
                    implicit: false,
                };
                self.insert(w.plugin, child_dest.clone(), item, w.replace)?;
                self.walk(w, &path, &child_dest, pending, progress)?;
            } else if self.options.own_output.contains(&(meta.dev(), meta.ino())) {
                self.warnings.push(format!(
                    "{} is where this run writes its bundle (or a file beside it), left by an earlier run: left out",
                    path.display()
                ));
            } else {
                let dir_arc = match &shared_dir {
                    Some(d) => d.clone(),
                    None => {
                        let d: Arc<Path> = Arc::from(dir);
                        shared_dir = Some(d.clone());
                        d
                    }
                };
                let shared = Source::InDir(dir_arc);
                self.add_file(
                    w.plugin,
                    &path,
                    Some(shared),
                    &meta,
                    child_dest,
                    None,
                    w.package,
                    w.replace,
                )?;
            }
        }
        Ok(())
    }

    /// Keep a link when what it points to is already in the bundle at a known place; else
    /// store its target's content (walking directories).
    fn resolve_link(
        &mut self,
        plugin: &str,
        link: PendingLink,
        pending: &mut Stack<PendingLink>,
        progress: &dyn Progress,
    ) -> Result<(), ArchiveError> {
        let meta = match fs::metadata(&link.disk) {
            Ok(m) => m,
            Err(e) => {
                let err = self.link_error(&link.disk, e);
                if self.options.drop_dangling
                    && matches!(
                        err,
                        ArchiveError::DanglingLink { .. } | ArchiveError::LinkLoop { .. }
                    )
                {
                    // Printed once, with the summary's warnings.
                    self.warnings.push(format!("{err}: left out"));
                    return Ok(());
                }
                return Err(err);
            }
        };
        let target = fs::read_link(&link.disk)
            .map_err(|e| ArchiveError::io("reading link", &link.disk, e))?;
        let link_dir = link.disk.parent().unwrap_or(Path::new("/"));
        let immediate = normalize(&link_dir.join(&target));
        if let Some(bundle_path) = self.bundle_path_of(&immediate) {
            if bundle_path != link.dest {
                let same = match (fs::symlink_metadata(&immediate), self.get(&bundle_path)?) {
                    (Ok(m), Some(item)) => item.id == Some((m.dev(), m.ino())),
                    _ => false,
                };
                if same {
                    let lmeta = fs::symlink_metadata(&link.disk)
                        .map_err(|e| ArchiveError::io("reading", &link.disk, e))?;
                    let item = Item {
                        kind: ItemKind::Symlink {
                            target: relative(parent(&link.dest), &bundle_path),
                        },
                        mode: 0o777,
                        mtime: self.mtime_of(&link.disk, &lmeta),
                        plugin: plugin.into(),
                        package: link.package.clone(),
                        id: Some((lmeta.dev(), lmeta.ino())),
                        gen: 0,
                        replace: false,
                        implicit: false,
                    };
                    return self.insert(plugin, link.dest, item, link.replace);
                }
            }
        }
        let canonical = fs::canonicalize(&link.disk).map_err(|e| self.link_error(&link.disk, e))?;
        if leads_to_system(&canonical, meta.is_dir()) {
            return Err(ArchiveError::LinkToSystem {
                path: link.disk.clone(),
                target,
                resolved: canonical,
            });
        }
        if meta.is_dir() {
            if link.chain.contains(&canonical) {
                let err = ArchiveError::LinkLoop {
                    path: link.disk.clone(),
                };
                if self.options.drop_dangling {
                    self.warnings.push(format!("{err}: left out"));
                    return Ok(());
                }
                return Err(err);
            }
            let item = Item {
                kind: ItemKind::Dir,
                mode: meta.mode() & 0o1777,
                mtime: self.mtime_of(&canonical, &meta),
                plugin: plugin.into(),
                package: link.package.clone(),
                id: Some((meta.dev(), meta.ino())),
                gen: 0,
                replace: false,
                implicit: false,
            };
            self.insert(plugin, link.dest.clone(), item, link.replace)?;
            let excludes = Excludes::new(plugin, &[])?;
            let mut chain = link.chain.clone();
            chain.push(canonical.clone());
            let w = Walk {
                plugin,
                package: &link.package,
                replace: link.replace,
                excludes: &excludes,
                root: &canonical,
                chain,
            };
            self.walk(&w, &canonical, &link.dest, pending, progress)
        } else {
            self.add_file(
                plugin,
                &canonical,
                None,
                &meta,
                link.dest,
                link.mode,
                &link.package,
                link.replace,
            )
        }
    }

    /// Where a path of the build machine sits in the bundle, if under a walked directory.
    fn bundle_path_of(&self, path: &Path) -> Option<Vec<u8>> {
        let mut best: Option<(usize, Vec<u8>)> = None;
        for (root, dest) in &self.roots {
            if let Ok(rel) = path.strip_prefix(root) {
                let depth = root.components().count();
                if best.as_ref().is_none_or(|(d, _)| depth > *d) {
                    let mut p = dest.clone();
                    for c in rel.components() {
                        p = join(&p, c.as_os_str().as_bytes());
                    }
                    best = Some((depth, p));
                }
            }
        }
        best.map(|(_, p)| p)
    }

    fn insert(
        &mut self,
        plugin: &str,
        path: Vec<u8>,
        item: Item,
        replace: bool,
    ) -> Result<(), ArchiveError> {
        let mut item = item;
        if let Some(shared) = &self.shared_plugin {
            if *shared == item.plugin {
                item.plugin = shared.clone();
            }
        }
        // Parents must be directories; create the missing ones.
        let mut at = 0;
        while let Some(n) = path[at..].iter().position(|&b| b == b'/') {
            let dir = path[..at + n].to_vec();
            at += n + 1;
            match self.items.get(&dir) {
                Some(i) if i.kind == ItemKind::Dir => {}
                Some(i) => {
                    return Err(ArchiveError::Conflict {
                        path: format!("{} (not a directory)", display(&dir)),
                        first: i.plugin.to_string(),
                        second: plugin.into(),
                    })
                }
                None => {
                    self.items.insert(
                        dir.clone(),
                        Item {
                            kind: ItemKind::Dir,
                            mode: 0o755,
                            mtime: 0,
                            plugin: self.shared_plugin.clone().unwrap_or_else(|| plugin.into()),
                            package: None,
                            id: None,
                            gen: self.gen,
                            replace: false,
                            implicit: true,
                        },
                    );
                }
            }
        }
        item.gen = self.gen;
        item.replace = replace;
        match self.items.get(&path) {
            None => {
                self.items.insert(path, item);
            }
            Some(old) => {
                if keep_new(&path, old, &item)? {
                    self.items.insert(path, item);
                }
            }
        }
        if self.items.len() >= self.budget() {
            self.spill()?;
        }
        Ok(())
    }

    fn budget(&self) -> usize {
        match self.options.memory_paths {
            0 => spill::DEFAULT_BUDGET,
            n => n,
        }
    }
}

/// Of two items planned at one path, `old` first, whether `new` takes the path. Two
/// directories merge; the same content twice is kept once; an entry marked `replace` replaces
/// a file or link; anything else is a conflict naming both plugins.
fn keep_new(path: &[u8], old: &Item, new: &Item) -> Result<bool, ArchiveError> {
    if old.kind == ItemKind::Dir && new.kind == ItemKind::Dir {
        return Ok(old.id.is_none() && new.id.is_some());
    }
    if same_content(old, new, path)? {
        return Ok(false);
    }
    if new.replace && old.kind != ItemKind::Dir && new.kind != ItemKind::Dir {
        return Ok(true);
    }
    Err(ArchiveError::Conflict {
        path: if new.implicit {
            format!("{} (not a directory)", display(path))
        } else {
            display(path)
        },
        first: old.plugin.to_string(),
        second: new.plugin.to_string(),
    })
}

/// The item that stays of two planned at one path (see [`keep_new`]).
fn settle(path: &[u8], old: Item, new: Item) -> Result<Item, ArchiveError> {
    Ok(if keep_new(path, &old, &new)? {
        new
    } else {
        old
    })
}

/// An I/O error on the plan's scratch files.
fn scratch_error(e: io::Error) -> ArchiveError {
    ArchiveError::io(
        "writing the plan's scratch files in",
        std::env::temp_dir().join("(unnamed)"),
        e,
    )
}

/// One planned path as stored in a run.
struct Planned {
    path: Vec<u8>,
    item: Item,
}

const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;
const KIND_SYMLINK: u8 = 2;
const FLAG_REPLACE: u8 = 1;
const FLAG_IMPLICIT: u8 = 2;
const FLAG_ID: u8 = 4;
const FLAG_PACKAGE: u8 = 8;

impl Record for Planned {
    fn encode(&self, out: &mut Vec<u8>) {
        let item = &self.item;
        put_bytes(out, &self.path);
        match &item.kind {
            ItemKind::File { source, size } => {
                out.push(KIND_FILE);
                put_bytes(out, source.path(&self.path).as_os_str().as_bytes());
                put_u64(out, *size);
            }
            ItemKind::Dir => out.push(KIND_DIR),
            ItemKind::Symlink { target } => {
                out.push(KIND_SYMLINK);
                put_bytes(out, target);
            }
        }
        let mut flags = 0;
        if item.replace {
            flags |= FLAG_REPLACE;
        }
        if item.implicit {
            flags |= FLAG_IMPLICIT;
        }
        if item.id.is_some() {
            flags |= FLAG_ID;
        }
        if item.package.is_some() {
            flags |= FLAG_PACKAGE;
        }
        out.push(flags);
        put_u32(out, item.mode);
        put_u64(out, item.mtime);
        put_u32(out, item.gen);
        put_bytes(out, item.plugin.as_bytes());
        if let Some(package) = &item.package {
            put_bytes(out, package.as_bytes());
        }
        if let Some((dev, ino)) = item.id {
            put_u64(out, dev);
            put_u64(out, ino);
        }
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut d = Decoder::new(bytes);
        let path = d.bytes()?.to_vec();
        let kind = match d.u8()? {
            KIND_FILE => {
                let source = Path::new(OsStr::from_bytes(d.bytes()?));
                ItemKind::File {
                    source: Source::Path(source.into()),
                    size: d.u64()?,
                }
            }
            KIND_DIR => ItemKind::Dir,
            KIND_SYMLINK => ItemKind::Symlink {
                target: d.bytes()?.to_vec(),
            },
            _ => return Err(spill::corrupt()),
        };
        let flags = d.u8()?;
        let mode = d.u32()?;
        let mtime = d.u64()?;
        let gen = d.u32()?;
        let text = |b: &[u8]| -> io::Result<Arc<str>> {
            std::str::from_utf8(b)
                .map(Arc::from)
                .map_err(|_| spill::corrupt())
        };
        let plugin = text(d.bytes()?)?;
        let package = if flags & FLAG_PACKAGE != 0 {
            Some(text(d.bytes()?)?)
        } else {
            None
        };
        let id = if flags & FLAG_ID != 0 {
            Some((d.u64()?, d.u64()?))
        } else {
            None
        };
        Ok(Planned {
            path,
            item: Item {
                kind,
                mode,
                mtime,
                plugin,
                package,
                id,
                gen,
                replace: flags & FLAG_REPLACE != 0,
                implicit: flags & FLAG_IMPLICIT != 0,
            },
        })
    }
}

/// A sorted run of planned paths in an unnamed temporary file, with the first path of every
/// [`INDEX_EVERY`] records for look-ups.
#[derive(Debug)]
struct Run {
    file: File,
    len: u64,
    index: Vec<(Vec<u8>, u64)>,
}

impl Run {
    /// The item at `path` in this run.
    fn get(&self, path: &[u8]) -> io::Result<Option<Item>> {
        let block = self
            .index
            .partition_point(|(first, _)| first.as_slice() <= path);
        let Some(start) = block.checked_sub(1) else {
            return Ok(None);
        };
        let from = self.index[start].1;
        let to = self.index.get(block).map_or(self.len, |(_, at)| *at);
        // One read of the block; only the matching record is decoded.
        let mut bytes = vec![0u8; (to - from) as usize];
        self.file.read_exact_at(&mut bytes, from)?;
        let mut rest = bytes.as_slice();
        while rest.len() >= 4 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let record = rest.get(4..4 + len).ok_or_else(spill::corrupt)?;
            let at = Decoder::new(record).bytes()?;
            match at.cmp(path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Planned::decode(record).map(|r| Some(r.item)),
                std::cmp::Ordering::Greater => break,
            }
            rest = &rest[4 + len..];
        }
        Ok(None)
    }
}

/// Writes a [`Run`], paths in order.
struct RunWriter {
    out: BufWriter<File>,
    len: u64,
    records: u64,
    index: Vec<(Vec<u8>, u64)>,
    scratch: Vec<u8>,
}

impl RunWriter {
    fn new() -> io::Result<RunWriter> {
        Ok(RunWriter {
            out: BufWriter::with_capacity(64 * 1024, tempfile::tempfile()?),
            len: 0,
            records: 0,
            index: Vec::new(),
            scratch: Vec::new(),
        })
    }

    fn push(&mut self, path: Vec<u8>, item: Item) -> io::Result<()> {
        let record = Planned { path, item };
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0; 4]);
        record.encode(&mut self.scratch);
        let n = (self.scratch.len() - 4) as u32;
        self.scratch[..4].copy_from_slice(&n.to_le_bytes());
        if self.records % INDEX_EVERY == 0 {
            self.index.push((record.path, self.len));
        }
        self.out.write_all(&self.scratch)?;
        self.len += self.scratch.len() as u64;
        self.records += 1;
        Ok(())
    }

    fn finish(self) -> io::Result<Run> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Run {
            file,
            len: self.len,
            index: self.index,
        })
    }
}

/// One sorted source of planned paths.
enum Layer<'a> {
    Disk(TapeReader<'a, Planned>),
    Memory(std::collections::btree_map::Iter<'a, Vec<u8>, Item>),
}

impl Layer<'_> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Item)>, ArchiveError> {
        match self {
            Layer::Disk(reader) => Ok(reader
                .next_record()
                .map_err(scratch_error)?
                .map(|r| (r.path, r.item))),
            Layer::Memory(iter) => Ok(iter.next().map(|(p, i)| (p.clone(), i.clone()))),
        }
    }
}

/// The layers of a plan merged into one sorted sequence; a path in several layers is
/// settled oldest first, as if each had been added after the ones before.
pub(crate) struct Entries<'a> {
    layers: Vec<Layer<'a>>,
    heads: Vec<Option<(Vec<u8>, Item)>>,
    started: bool,
    failed: bool,
}

impl<'a> Entries<'a> {
    fn new(layers: Vec<Layer<'a>>) -> Self {
        Entries {
            heads: layers.iter().map(|_| None).collect(),
            layers,
            started: false,
            failed: false,
        }
    }

    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Item)>, ArchiveError> {
        if !self.started {
            self.started = true;
            for (head, layer) in self.heads.iter_mut().zip(&mut self.layers) {
                *head = layer.next_entry()?;
            }
        }
        let Some(least) = self.heads.iter().flatten().map(|(p, _)| p).min().cloned() else {
            return Ok(None);
        };
        let mut found: Option<Item> = None;
        for (head, layer) in self.heads.iter_mut().zip(&mut self.layers) {
            if head.as_ref().is_some_and(|(p, _)| *p == least) {
                let (_, item) = std::mem::replace(head, layer.next_entry()?)
                    .ok_or_else(|| scratch_error(io::Error::other("a plan layer lost its head")))?;
                found = Some(match found {
                    None => item,
                    Some(old) => settle(&least, old, item)?,
                });
            }
        }
        Ok(found.map(|item| (least, item)))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(Vec<u8>, Item), ArchiveError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_entry().transpose();
        if matches!(next, Some(Err(_))) {
            self.failed = true;
        }
        next
    }
}

struct Walk<'a> {
    plugin: &'a str,
    package: &'a Option<Arc<str>>,
    replace: bool,
    excludes: &'a Excludes,
    root: &'a Path,
    chain: Vec<PathBuf>,
}

/// Whether `a` and `b`, both planned at bundle path `at`, have the same content.
fn same_content(a: &Item, b: &Item, at: &[u8]) -> Result<bool, ArchiveError> {
    match (&a.kind, &b.kind) {
        (
            ItemKind::File {
                source: sa,
                size: za,
            },
            ItemKind::File {
                source: sb,
                size: zb,
            },
        ) => {
            if a.id.is_some() && a.id == b.id {
                return Ok(true);
            }
            if za != zb {
                return Ok(false);
            }
            airgap_io::same_contents(&sa.path(at), &sb.path(at))
                .map_err(|e| ArchiveError::io("reading", &e.path, e.source))
        }
        (ItemKind::Symlink { target: ta }, ItemKind::Symlink { target: tb }) => Ok(ta == tb),
        _ => Ok(false),
    }
}

fn bundle_file(path: &[u8], item: &Item) -> PlannedFile {
    let (kind, source, size) = match &item.kind {
        ItemKind::File { source, size } => (
            PlannedKind::File,
            Some(source.path(path).into_owned()),
            *size,
        ),
        ItemKind::Dir => (PlannedKind::Dir, None, 0),
        ItemKind::Symlink { target } => (
            PlannedKind::Symlink {
                target: display(target),
            },
            None,
            0,
        ),
    };
    PlannedFile {
        path: display(path),
        source,
        kind,
        mode: item.mode,
        size,
        plugin: item.plugin.to_string(),
        package: item.package.as_deref().map(str::to_owned),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(relative(b"env/bin", b"env/bin/python3.11"), b"python3.11");
        assert_eq!(relative(b"env/bin", b"env/lib/x"), b"../lib/x");
        assert_eq!(relative(b"", b"a"), b"a");
        assert_eq!(relative(b"a", b"a"), b".");
    }

    #[test]
    fn dest_rules() {
        assert!(clean_dest("p", "/etc").is_err());
        assert!(clean_dest("p", "a/../b").is_err());
        assert!(clean_dest("p", ".airgap/x").is_err());
        assert_eq!(clean_dest("p", "./a//b/").unwrap(), b"a/b");
    }

    #[test]
    fn links_inside() {
        assert!(link_stays_inside(b"a/b", b"../c"));
        assert!(!link_stays_inside(b"a", b"../../c"));
        assert!(!link_stays_inside(b"a", b"/etc"));
    }

    #[test]
    fn a_file_resolves_as_realpath_resolves_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        fs::write(root.join("real/sub/f"), b"x").unwrap();
        fs::write(root.join("real/g"), b"y").unwrap();
        std::os::unix::fs::symlink("real/sub", root.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("../g", root.join("real/sub/filelink")).unwrap();
        let mut plan = Plan::default();
        // In the order entries come: the same directory twice, through a link, a link.
        for p in [
            "real/sub/f",
            "real/sub/f",
            "dirlink/f",
            "real/g",
            "dirlink/filelink",
            "real/sub/../g",
        ] {
            let source = root.join(p);
            let link = fs::symlink_metadata(&source)
                .unwrap()
                .file_type()
                .is_symlink();
            assert_eq!(
                plan.canonical_file(&source, link).unwrap(),
                fs::canonicalize(&source).unwrap(),
                "{p}"
            );
        }
    }
}
