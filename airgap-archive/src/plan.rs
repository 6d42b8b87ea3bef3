//! Turning the plugins' entries into the exact list of bundle paths: walking directories,
//! deciding for every symbolic link whether to keep it or store what it points to, and
//! refusing two different contents at one path.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use airgap_plugin_api::{BundleFile, Entry, EntryKind, FileKind};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::ArchiveError;
use crate::progress::{Level, Progress, Unit};

/// Top-level names the bundle reserves for itself.
pub const RESERVED: &[&str] = &[".airgap", "unpack"];

/// How the plan treats what it cannot follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Leave out dangling links and link loops with a warning instead of failing.
    pub drop_dangling: bool,
}

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
}

/// Every path of the bundle, built plugin by plugin.
#[derive(Debug, Default)]
pub struct Plan {
    options: PlanOptions,
    pub(crate) items: BTreeMap<Vec<u8>, Item>,
    warnings: Vec<String>,
    /// Directories walked so far (canonical source -> bundle path), to keep links into them.
    roots: Vec<(PathBuf, Vec<u8>)>,
    /// The plugin being added, shared by all its items (one allocation, not one per file).
    shared_plugin: Option<Arc<str>>,
    /// Number of [`Plan::add`] calls so far.
    gen: u32,
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

struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    fn new(plugin: &str, patterns: &[String]) -> Result<Excludes, ArchiveError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let trimmed = p.trim_end_matches('/');
            let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .build()
                .map_err(|e| ArchiveError::InvalidGlob {
                    plugin: plugin.into(),
                    pattern: p.clone(),
                    reason: e.to_string(),
                })?;
            if trimmed.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| ArchiveError::InvalidGlob {
                plugin: plugin.into(),
                pattern: patterns.join(", "),
                reason: e.to_string(),
            })
        };
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    fn excluded(&self, rel: &Path) -> bool {
        rel.file_name().is_some_and(|n| self.names.is_match(n)) || self.paths.is_match(rel)
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

/// Does `target`, relative to the directory `dir` (a bundle path), stay inside the bundle?
pub(crate) fn link_stays_inside(dir: &[u8], target: &[u8]) -> bool {
    if target.starts_with(b"/") || target.is_empty() {
        return false;
    }
    let mut depth: Vec<&[u8]> = dir
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            c => depth.push(c),
        }
    }
    true
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
        Plan {
            options,
            ..Plan::default()
        }
    }

    /// Warnings collected so far (dropped links, stripped setuid bits, skipped special files).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of bundle paths planned.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing planned yet.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every planned path, sorted by path.
    pub fn files(&self) -> Vec<BundleFile> {
        self.iter_files().collect()
    }

    /// Every planned path, sorted by path, one at a time: for a 100,000-file plan, the
    /// `Vec` of [`Plan::files`] alone costs tens of MB.
    pub fn iter_files(&self) -> impl Iterator<Item = BundleFile> + '_ {
        self.items.iter().map(|(p, i)| bundle_file(p, i))
    }

    /// Resolve one plugin's entries into bundle paths. Returns the records this call added or
    /// replaced (later plugins receive them as `request.earlier`).
    pub fn add(
        &mut self,
        plugin: &str,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> Result<Vec<BundleFile>, ArchiveError> {
        self.extend(plugin, entries, progress)?;
        let gen = self.gen;
        Ok(self
            .items
            .iter()
            .filter(|(_, i)| i.gen == gen)
            .map(|(p, i)| bundle_file(p, i))
            .collect())
    }

    /// What the last [`Plan::add`]/[`Plan::extend`] call put at `path` (a bundle path), if
    /// anything: the host checks a plugin's claims about its own files with it.
    pub fn added_last(&self, path: &str) -> Option<FileKind> {
        let item = self.items.get(path.as_bytes())?;
        (item.gen == self.gen).then(|| match &item.kind {
            ItemKind::File { .. } => FileKind::File,
            ItemKind::Dir => FileKind::Dir,
            ItemKind::Symlink { target } => FileKind::Symlink {
                target: display(target),
            },
        })
    }

    /// [`Plan::add`] without the records: returns how many paths this call added or replaced
    /// (a record per path costs hundreds of bytes; a 100,000-file source does not need them).
    pub fn extend(
        &mut self,
        plugin: &str,
        entries: &[Entry],
        progress: &dyn Progress,
    ) -> Result<usize, ArchiveError> {
        progress.begin(&format!("scanning {plugin}"), 0, Unit::Items);
        self.shared_plugin = Some(Arc::from(plugin));
        self.gen += 1;
        let mut pending = Vec::new();
        let result = (|| {
            for entry in entries {
                if progress.is_cancelled() {
                    return Err(ArchiveError::Cancelled);
                }
                self.add_entry(plugin, entry, &mut pending, progress)?;
            }
            while let Some(link) = pending.pop() {
                if progress.is_cancelled() {
                    return Err(ArchiveError::Cancelled);
                }
                self.resolve_link(plugin, link, &mut pending, progress)?;
            }
            Ok(())
        })();
        progress.end();
        result?;
        // Paths arrive mostly in order, which leaves B-tree nodes half empty: rebuilding from
        // the sorted sequence packs them (about a third less memory per path). `append` into a
        // non-empty map merges the two sorted sequences node by node, freeing the old nodes as
        // it goes; `collect` would first copy every item into a `Vec` and sort it (twice the
        // plan's size at once).
        let mut rest = std::mem::take(&mut self.items);
        if let Some((path, item)) = rest.pop_first() {
            self.items.insert(path, item);
            self.items.append(&mut rest);
        }
        let gen = self.gen;
        Ok(self.items.values().filter(|i| i.gen == gen).count())
    }

    fn add_entry(
        &mut self,
        plugin: &str,
        entry: &Entry,
        pending: &mut Vec<PendingLink>,
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
                };
                self.insert(plugin, dest, item, entry.replace)
            }
            EntryKind::Path { source, exclude } => {
                let excludes = Excludes::new(plugin, exclude)?;
                let package: Option<Arc<str>> = entry.package.as_deref().map(Arc::from);
                let meta = match fs::metadata(source) {
                    Ok(m) => m,
                    Err(e) => return Err(self.link_error(source, e)),
                };
                if meta.is_dir() {
                    let canonical = fs::canonicalize(source)
                        .map_err(|e| ArchiveError::io("resolving", source, e))?;
                    if !dest.is_empty() {
                        let item = Item {
                            kind: ItemKind::Dir,
                            mode: entry.mode.unwrap_or(meta.mode()) & 0o1777,
                            mtime: mtime_of(&meta),
                            plugin: plugin.into(),
                            package: package.clone(),
                            id: Some((meta.dev(), meta.ino())),
                            gen: 0,
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
                    let canonical = fs::canonicalize(source)
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
            mtime: mtime_of(meta),
            plugin: plugin.into(),
            package: package.clone(),
            id: Some((meta.dev(), meta.ino())),
            gen: 0,
        };
        self.insert(plugin, dest, item, replace)
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
        pending: &mut Vec<PendingLink>,
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
                pending.push(PendingLink {
                    disk: path,
                    dest: child_dest,
                    mode: None,
                    package: w.package.clone(),
                    replace: w.replace,
                    chain: w.chain.clone(),
                });
            } else if ft.is_dir() {
                let item = Item {
                    kind: ItemKind::Dir,
                    mode: meta.mode() & 0o1777,
                    mtime: mtime_of(&meta),
                    plugin: w.plugin.into(),
                    package: w.package.clone(),
                    id: Some((meta.dev(), meta.ino())),
                    gen: 0,
                };
                self.insert(w.plugin, child_dest.clone(), item, w.replace)?;
                self.walk(w, &path, &child_dest, pending, progress)?;
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
        pending: &mut Vec<PendingLink>,
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
                    self.warnings.push(format!("{err}: left out"));
                    progress.message(Level::Warn, &format!("{err}: left out"));
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
                let same = match (
                    fs::symlink_metadata(&immediate),
                    self.items.get(&bundle_path),
                ) {
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
                        mtime: mtime_of(&lmeta),
                        plugin: plugin.into(),
                        package: link.package.clone(),
                        id: Some((lmeta.dev(), lmeta.ino())),
                        gen: 0,
                    };
                    return self.insert(plugin, link.dest, item, link.replace);
                }
            }
        }
        let canonical = fs::canonicalize(&link.disk).map_err(|e| self.link_error(&link.disk, e))?;
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
                mtime: mtime_of(&meta),
                plugin: plugin.into(),
                package: link.package.clone(),
                id: Some((meta.dev(), meta.ino())),
                gen: 0,
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
                        },
                    );
                }
            }
        }
        match self.items.get(&path) {
            None => {
                item.gen = self.gen;
                self.items.insert(path, item);
                Ok(())
            }
            Some(old) if old.kind == ItemKind::Dir && item.kind == ItemKind::Dir => {
                if old.id.is_none() && item.id.is_some() {
                    item.gen = self.gen;
                    self.items.insert(path, item);
                }
                Ok(())
            }
            Some(old) => {
                if same_content(old, &item, &path)? {
                    return Ok(());
                }
                if replace && old.kind != ItemKind::Dir && item.kind != ItemKind::Dir {
                    item.gen = self.gen;
                    self.items.insert(path, item);
                    return Ok(());
                }
                Err(ArchiveError::Conflict {
                    path: display(&path),
                    first: old.plugin.to_string(),
                    second: plugin.into(),
                })
            }
        }
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
            files_equal(&sa.path(at), &sb.path(at))
        }
        (ItemKind::Symlink { target: ta }, ItemKind::Symlink { target: tb }) => Ok(ta == tb),
        _ => Ok(false),
    }
}

fn files_equal(a: &Path, b: &Path) -> Result<bool, ArchiveError> {
    let mut fa = fs::File::open(a).map_err(|e| ArchiveError::io("reading", a, e))?;
    let mut fb = fs::File::open(b).map_err(|e| ArchiveError::io("reading", b, e))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| ArchiveError::io("reading", a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| ArchiveError::io("reading", b, e))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the end of the file.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn bundle_file(path: &[u8], item: &Item) -> BundleFile {
    let (kind, source, size) = match &item.kind {
        ItemKind::File { source, size } => {
            (FileKind::File, Some(source.path(path).into_owned()), *size)
        }
        ItemKind::Dir => (FileKind::Dir, None, 0),
        ItemKind::Symlink { target } => (
            FileKind::Symlink {
                target: display(target),
            },
            None,
            0,
        ),
    };
    BundleFile {
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
}
