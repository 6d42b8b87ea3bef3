//! The loader model over a bundle as it will be laid out on the target.
//!
//! [`Loader`](crate::loader::Loader) answers for files on a disk; this module answers for a
//! *view*: the bundle's ELF files, links and wheel members by bundle path (what the target
//! will have under the unpack dir), plus the target's own system (a manylinux policy or a
//! real root filesystem). The rules are glibc's (`_dl_map_object` and
//! `_dl_map_object_deps`):
//!
//! - a needed name matching the name or `DT_SONAME` of an object already loaded in this
//!   process (earlier in breadth-first order, or by the program that dlopens the object) is
//!   reused, whatever the search path says;
//! - else DT_RPATH of the requesting object, then of its loader, up the chain to the
//!   program, only when the requesting object has no DT_RUNPATH (and an object that has
//!   DT_RUNPATH contributes no DT_RPATH); `LD_LIBRARY_PATH`; DT_RUNPATH of the requesting
//!   object only; then the system (`ld.so.cache` and default dirs of a root, or the
//!   policy's assumed libraries);
//! - `$ORIGIN` is the directory of the path the object was opened by (lexical);
//! - absolute entries inside the source prefix of the environment are relocated into the
//!   bundle (the conda plugin rewrites them); other absolute entries are the target's;
//! - each `.gnu.version_r` entry must be defined by the library its file name resolved to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::loader::{normalize, Loader, Via};
use crate::policy::{never_bundle, ManylinuxPolicy};
use crate::version::split_version_name;
use crate::{join_bundle_path, ElfClass, ElfFile, VersionNeed};

/// Where an object lives once the bundle is unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "in", content = "path", rename_all = "snake_case")]
pub enum Place {
    /// A bundle path (relative to the bundle's top folder; `w.whl!/m` for a wheel member).
    Bundle(String),
    /// An absolute path on the target; for a policy target, the soname it is assumed to
    /// provide.
    Target(PathBuf),
}

/// A directory searched: in the bundle, or on the target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dir {
    /// A bundle dir.
    Bundle(String),
    /// An absolute dir on the target.
    Target(PathBuf),
}

/// The bundle as laid out on the target: ELF objects and links by bundle path.
#[derive(Debug, Default)]
pub struct View {
    objects: BTreeMap<String, Arc<ElfFile>>,
    links: HashMap<String, String>,
    relocations: Vec<(PathBuf, String)>,
}

impl View {
    /// An empty view.
    pub fn new() -> View {
        View::default()
    }

    /// A regular ELF file (or a wheel member, `wheels/x.whl!/pkg/mod.so`) at `path`.
    pub fn add_object(&mut self, path: impl Into<String>, elf: Arc<ElfFile>) {
        self.objects.insert(path.into(), elf);
    }

    /// A symbolic link at `path` to `target` (relative to the link's dir, or absolute).
    pub fn add_link(&mut self, path: impl Into<String>, target: impl Into<String>) {
        self.links.insert(path.into(), target.into());
    }

    /// Absolute paths under `source` (the environment's prefix on the build machine) are
    /// rewritten by its plugin to `bundle_dir` on the target.
    pub fn relocate(&mut self, source: impl Into<PathBuf>, bundle_dir: impl Into<String>) {
        self.relocations.push((source.into(), bundle_dir.into()));
    }

    /// The ELF objects, by bundle path.
    pub fn objects(&self) -> &BTreeMap<String, Arc<ElfFile>> {
        &self.objects
    }

    /// An absolute path mapped into the bundle when it is inside a relocated prefix.
    pub fn relocated(&self, abs: &str) -> Option<String> {
        let p = normalize(Path::new(abs));
        self.relocations.iter().find_map(|(src, dir)| {
            let rel = p.strip_prefix(src).ok()?;
            join_bundle_path(dir, &rel.to_string_lossy())
        })
    }

    /// The bundle path `path` names once links (of the file or of its dirs) are followed;
    /// `None` when it leaves the bundle or loops.
    pub fn canonical(&self, path: &str) -> Option<String> {
        let mut todo: VecDeque<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop()?;
                    continue;
                }
                _ => done.push(part),
            }
            if self.links.is_empty() {
                continue;
            }
            let cur = done.join("/");
            if let Some(target) = self.links.get(&cur) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                done.pop();
                let rel = if target.starts_with('/') {
                    let mapped = self.relocated(target)?;
                    done.clear();
                    mapped
                } else {
                    target.clone()
                };
                for t in rel.split('/').rev().filter(|p| !p.is_empty()) {
                    todo.push_front(t.to_owned());
                }
            }
        }
        Some(done.join("/"))
    }

    /// The ELF object at `path` (links followed), with its canonical path.
    pub fn lookup(&self, path: &str) -> Option<(String, Arc<ElfFile>)> {
        if let Some(elf) = self.objects.get(path) {
            return Some((path.to_owned(), elf.clone()));
        }
        if self.links.is_empty() {
            return None;
        }
        let c = self.canonical(path)?;
        self.objects.get(&c).map(|elf| (c, elf.clone()))
    }
}

/// What the target system offers beyond the bundle.
#[derive(Debug, Clone, Copy)]
pub enum System<'a> {
    /// A manylinux policy: its assumed libraries (and glibc, and GPU driver libraries, which
    /// are the target's by definition) with its highest symbol version per prefix. Nothing
    /// is at any absolute path.
    Policy(&'a ManylinuxPolicy),
    /// A real root filesystem: its cache, default dirs and files.
    Root(&'a Loader),
}

/// One object in the model: where it is, the dir `$ORIGIN` stands for, its ELF data (none
/// for a library a policy assumes).
#[derive(Debug, Clone)]
pub struct Obj {
    /// Where it is (the canonical path for a bundle file).
    pub place: Place,
    /// `$ORIGIN`: the dir of the path it was opened by.
    pub origin: Dir,
    /// Its ELF data.
    pub elf: Option<Arc<ElfFile>>,
}

/// One needed name of an object, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Dep {
    /// The `DT_NEEDED` name.
    pub name: String,
    /// What it resolved to.
    pub found: Option<Place>,
    /// Which step found it.
    pub via: Option<Via>,
}

/// One object loaded by a walk, in its context.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The object.
    pub obj: Obj,
    /// Its needed names, resolved, in order.
    pub deps: Vec<Dep>,
    /// `libc.so.6: GLIBC_2.34`: versions its providers do not define.
    pub missing_versions: Vec<String>,
}

impl Loaded {
    /// True when all its needs resolve with all their versions.
    pub fn ok(&self) -> bool {
        self.missing_versions.is_empty() && self.deps.iter().all(|d| d.found.is_some())
    }
}

/// The objects of one process, and the names each answers to.
#[derive(Debug, Clone, Default)]
pub struct Process {
    objs: Vec<Obj>,
    names: HashMap<String, usize>,
    places: HashMap<Place, usize>,
}

impl Process {
    fn find(&self, name: &str) -> Option<&Obj> {
        self.names.get(name).map(|&i| &self.objs[i])
    }

    fn add(&mut self, obj: Obj, name: Option<&str>) -> usize {
        let i = match self.places.get(&obj.place) {
            Some(&i) => i,
            None => {
                let i = self.objs.len();
                self.places.insert(obj.place.clone(), i);
                if let Some(so) = obj.elf.as_ref().and_then(|e| e.soname.clone()) {
                    self.names.entry(so).or_insert(i);
                }
                self.objs.push(obj);
                i
            }
        };
        if let Some(n) = name {
            self.names.entry(n.to_owned()).or_insert(i);
        }
        i
    }

    /// Every object of the process, in load order.
    pub fn objects(&self) -> &[Obj] {
        &self.objs
    }
}

/// A walk: every object loaded, breadth-first, the first one first.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The objects, in load order.
    pub loaded: Vec<Loaded>,
}

impl Walk {
    /// True when every object of the walk loads.
    pub fn ok(&self) -> bool {
        self.loaded.iter().all(Loaded::ok)
    }
}

type Memo = HashMap<(Vec<Dir>, String, ElfClass, u16), Option<(Obj, Via)>>;

/// The loader of the target, over a view of the bundle.
pub struct Model<'a> {
    view: &'a View,
    system: System<'a>,
    ld_library_path: Vec<String>,
    tokens: Loader,
    memo: Mutex<Memo>,
}

impl<'a> Model<'a> {
    /// The model of `view` unpacked on `system`, with an empty `LD_LIBRARY_PATH`.
    pub fn new(view: &'a View, system: System<'a>) -> Model<'a> {
        Model {
            view,
            system,
            ld_library_path: Vec::new(),
            tokens: Loader::for_root(Path::new("/")),
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// `LD_LIBRARY_PATH` on the target (entries as in the variable).
    pub fn with_ld_library_path(mut self, entries: Vec<String>) -> Model<'a> {
        self.ld_library_path = entries;
        self
    }

    /// The bundle object at `path`, as opened by that path.
    pub fn object(&self, path: &str) -> Option<Obj> {
        let (canonical, elf) = self.view.lookup(path)?;
        Some(Obj {
            place: Place::Bundle(canonical),
            origin: Dir::Bundle(dir_of(path).to_owned()),
            elf: Some(elf),
        })
    }

    /// Start the program at bundle path `path`: it and its closure.
    pub fn program(&self, path: &str) -> Option<(Walk, Process)> {
        let obj = self.object(path)?;
        Some(self.walk(obj, &[], Process::default()))
    }

    /// `dlopen` of bundle object `path` by `opener` (the object calling dlopen first, the
    /// program last) in `process`: what it loads and the process after.
    pub fn dlopen(&self, path: &str, opener: &[Obj], process: Process) -> Option<(Walk, Process)> {
        let obj = self.object(path)?;
        if let Some(&i) = process.places.get(&obj.place) {
            // Already loaded: nothing new.
            let _ = i;
            return Some((Walk::default(), process));
        }
        Some(self.walk(obj, opener, process))
    }

    /// Breadth-first loading from `first`, loaded by `parents` (its loader first).
    fn walk(&self, first: Obj, parents: &[Obj], mut process: Process) -> (Walk, Process) {
        let mut walk = Walk::default();
        process.add(first.clone(), None);
        let mut chain = vec![first.clone()];
        chain.extend(parents.iter().cloned());
        let mut queue: VecDeque<Vec<Obj>> = VecDeque::from([chain]);
        while let Some(chain) = queue.pop_front() {
            let me = chain[0].clone();
            let Some(elf) = me.elf.clone() else {
                walk.loaded.push(Loaded {
                    obj: me,
                    deps: Vec::new(),
                    missing_versions: Vec::new(),
                });
                continue;
            };
            let mut deps = Vec::with_capacity(elf.needed.len());
            for name in &elf.needed {
                if let Some(obj) = process.find(name) {
                    deps.push(Dep {
                        name: name.clone(),
                        found: Some(obj.place.clone()),
                        via: Some(Via::Loaded),
                    });
                    continue;
                }
                match self.resolve(name, &chain, &elf) {
                    Some((obj, via)) => {
                        let fresh = !process.places.contains_key(&obj.place);
                        process.add(obj.clone(), Some(name));
                        deps.push(Dep {
                            name: name.clone(),
                            found: Some(obj.place.clone()),
                            via: Some(via),
                        });
                        if fresh {
                            let mut sub = Vec::with_capacity(chain.len() + 1);
                            sub.push(obj);
                            sub.extend(chain.iter().cloned());
                            queue.push_back(sub);
                        }
                    }
                    None => deps.push(Dep {
                        name: name.clone(),
                        found: None,
                        via: None,
                    }),
                }
            }
            let mut missing_versions = Vec::new();
            for need in &elf.version_needs {
                if let Some(provider) = process.find(&need.file) {
                    missing_versions.extend(self.version_gaps(need, provider));
                }
            }
            walk.loaded.push(Loaded {
                obj: me,
                deps,
                missing_versions,
            });
        }
        (walk, process)
    }

    /// The versions of `need` that `provider` does not define, as `file: VERSION`.
    fn version_gaps(&self, need: &VersionNeed, provider: &Obj) -> Vec<String> {
        let missing: Vec<&String> = match (&provider.elf, self.system) {
            (Some(elf), _) => {
                // A library without version definitions satisfies any (ld.so only warns).
                if elf.version_defs.is_empty() {
                    return Vec::new();
                }
                need.versions
                    .iter()
                    .filter(|v| !elf.version_defs.contains(v))
                    .collect()
            }
            (None, System::Policy(policy)) if policy.lib_versions.contains_key(&need.file) => {
                // A probed target: the versions its own library defines.
                let defs = &policy.lib_versions[&need.file];
                need.versions.iter().filter(|v| !defs.contains(v)).collect()
            }
            (None, System::Policy(policy)) => need
                .versions
                .iter()
                .filter(|v| {
                    split_version_name(v).is_some_and(|(prefix, ver)| {
                        policy
                            .max_versions
                            .max(prefix)
                            .is_some_and(|max| ver > *max)
                    })
                })
                .collect(),
            (None, System::Root(_)) => Vec::new(),
        };
        missing
            .into_iter()
            .map(|v| format!("{}: {v}", need.file))
            .collect()
    }

    /// Where `name`, needed by `chain[0]` (whose ELF data is `elf`), is found.
    fn resolve(&self, name: &str, chain: &[Obj], elf: &ElfFile) -> Option<(Obj, Via)> {
        let (class, machine) = (elf.class, elf.machine);
        if name.contains('/') {
            if !name.starts_with('/') {
                return None;
            }
            let dir = self.absolute_dir(Path::new(name).parent()?.to_str()?);
            let base = name.rsplit('/').next()?;
            return self.probe(&dir, base, Via::Path, class, machine, false);
        }
        let dirs = self.search_dirs(chain);
        let key = (
            dirs.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            name.to_owned(),
            class,
            machine,
        );
        if let Some(hit) = self.lock_memo().get(&key) {
            return hit.clone();
        }
        let found = self.search(name, &dirs, class, machine);
        self.lock_memo().insert(key, found.clone());
        found
    }

    fn lock_memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn search(
        &self,
        name: &str,
        dirs: &[(Dir, Via)],
        class: ElfClass,
        machine: u16,
    ) -> Option<(Obj, Via)> {
        for (dir, via) in dirs {
            if let Some(hit) = self.probe(dir, name, *via, class, machine, true) {
                return Some(hit);
            }
        }
        match self.system {
            System::Policy(policy) => {
                (policy.assumes(name) || never_bundle(name).is_some()).then(|| {
                    (
                        Obj {
                            place: Place::Target(PathBuf::from(name)),
                            origin: Dir::Target(PathBuf::from("/")),
                            elf: None,
                        },
                        Via::Default,
                    )
                })
            }
            System::Root(loader) => {
                let found = loader.resolve_system(name, class, machine)?;
                let target = self.target_path(loader, &found.path);
                Some((
                    Obj {
                        origin: Dir::Target(target.parent().unwrap_or(Path::new("/")).into()),
                        place: Place::Target(target),
                        elf: Some(found.elf),
                    },
                    found.via,
                ))
            }
        }
    }

    /// A local path under the root turned into the absolute path on the target.
    fn target_path(&self, loader: &Loader, local: &Path) -> PathBuf {
        match local.strip_prefix(loader.root()) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => local.to_path_buf(),
        }
    }

    /// Look for `name` in one dir, its hwcaps subdirs first (when `hwcaps`).
    fn probe(
        &self,
        dir: &Dir,
        name: &str,
        via: Via,
        class: ElfClass,
        machine: u16,
        hwcaps: bool,
    ) -> Option<(Obj, Via)> {
        match dir {
            Dir::Bundle(d) => {
                let subs = if hwcaps {
                    self.tokens.hwcap_subdirs()
                } else {
                    &[]
                };
                for sub in subs.iter().map(String::as_str).chain([""]) {
                    let opened = [d.as_str(), sub, name]
                        .iter()
                        .filter(|p| !p.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join("/");
                    if let Some((canonical, elf)) = self.view.lookup(&opened) {
                        if elf.class == class && elf.machine == machine {
                            return Some((
                                Obj {
                                    place: Place::Bundle(canonical),
                                    origin: Dir::Bundle(dir_of(&opened).to_owned()),
                                    elf: Some(elf),
                                },
                                via,
                            ));
                        }
                    }
                }
                None
            }
            Dir::Target(abs) => {
                let System::Root(loader) = self.system else {
                    return None;
                };
                let local = loader.in_root(&abs.to_string_lossy());
                let found = if hwcaps {
                    loader.probe(&local, name, via, class, machine)?
                } else {
                    let path = local.join(name);
                    let elf = loader.parse(&path).ok()?;
                    (elf.class == class && elf.machine == machine)
                        .then_some(crate::loader::Found { path, elf, via })?
                };
                let target = self.target_path(loader, &found.path);
                Some((
                    Obj {
                        origin: Dir::Target(target.parent().unwrap_or(Path::new("/")).into()),
                        place: Place::Target(target),
                        elf: Some(found.elf),
                    },
                    via,
                ))
            }
        }
    }

    /// An absolute dir: in the bundle when relocated, else the target's.
    fn absolute_dir(&self, abs: &str) -> Dir {
        match self.view.relocated(abs) {
            Some(b) => Dir::Bundle(b),
            None => Dir::Target(normalize(Path::new(abs))),
        }
    }

    /// One search-path entry of an object whose `$ORIGIN` is `origin`, expanded.
    pub fn expand(&self, entry: &str, origin: &Dir) -> Option<Dir> {
        let s = self.tokens.expand_lib_platform(entry);
        for token in ["${ORIGIN}", "$ORIGIN"] {
            if let Some(rest) = s.strip_prefix(token) {
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                return match origin {
                    Dir::Bundle(d) => join_bundle_path(d, rest).map(Dir::Bundle),
                    Dir::Target(p) => Some(Dir::Target(normalize(
                        &p.join(rest.trim_start_matches('/')),
                    ))),
                };
            }
        }
        if s.contains("$ORIGIN") || s.contains("${ORIGIN}") {
            return None;
        }
        s.starts_with('/').then(|| self.absolute_dir(&s))
    }

    /// The dirs searched for a name needed by `chain[0]` (its loaders follow, the program
    /// last), each with its step; the system follows them.
    pub fn search_dirs(&self, chain: &[Obj]) -> Vec<(Dir, Via)> {
        let mut dirs = Vec::new();
        let Some(first) = chain.first() else {
            return dirs;
        };
        let has_runpath = |o: &Obj| o.elf.as_ref().is_some_and(|e| e.has_runpath);
        if !has_runpath(first) {
            for obj in chain {
                // An object that has a RUNPATH contributes no RPATH to the chain.
                if has_runpath(obj) {
                    continue;
                }
                let Some(elf) = &obj.elf else { continue };
                for e in &elf.rpath {
                    if let Some(d) = self.expand(e, &obj.origin) {
                        dirs.push((d, Via::Rpath));
                    }
                }
            }
        }
        for e in &self.ld_library_path {
            if let Some(d) = self.expand(e, &first.origin) {
                dirs.push((d, Via::LdLibraryPath));
            }
        }
        if let Some(elf) = &first.elf {
            for e in &elf.runpath {
                if let Some(d) = self.expand(e, &first.origin) {
                    dirs.push((d, Via::Runpath));
                }
            }
        }
        dirs
    }
}

/// `a/b/c` -> `a/b`; `c` -> ``.
pub fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::policy_by_name;
    use crate::{ElfKind, VersionNeed};

    fn elf(
        soname: Option<&str>,
        needed: &[&str],
        rpath: &[&str],
        runpath: Option<&[&str]>,
    ) -> ElfFile {
        ElfFile {
            path: PathBuf::from("x"),
            class: ElfClass::Elf64,
            machine: 62,
            kind: ElfKind::Shared,
            interpreter: None,
            soname: soname.map(str::to_owned),
            needed: needed.iter().map(|s| (*s).to_owned()).collect(),
            rpath: rpath.iter().map(|s| (*s).to_owned()).collect(),
            runpath: runpath
                .unwrap_or(&[])
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            has_runpath: runpath.is_some(),
            version_needs: Vec::new(),
            version_defs: Vec::new(),
            size: 0,
        }
    }

    fn found<'w>(w: &'w Walk, obj: &str, dep: &str) -> Option<&'w Place> {
        let l = w
            .loaded
            .iter()
            .find(|l| l.obj.place == Place::Bundle(obj.into()))
            .unwrap_or_else(|| panic!("{obj} not loaded: {w:?}"));
        l.deps
            .iter()
            .find(|d| d.name == dep)
            .and_then(|d| d.found.as_ref())
    }

    /// An extension with `$ORIGIN/../libs` RPATH needs liba, which needs libb with no
    /// search path of its own: found through the inherited RPATH (auditwheel's layout).
    #[test]
    fn rpath_is_inherited_from_the_loader_chain() {
        let mut v = View::new();
        v.add_object(
            "pkg/ext.so",
            Arc::new(elf(None, &["liba.so"], &["$ORIGIN/../libs"], None)),
        );
        v.add_object(
            "libs/liba.so",
            Arc::new(elf(Some("liba.so"), &["libb.so"], &[], None)),
        );
        v.add_object(
            "libs/libb.so",
            Arc::new(elf(Some("libb.so"), &[], &[], None)),
        );
        let p = policy_by_name("manylinux2014").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("pkg/ext.so").expect("walk");
        assert!(w.ok(), "{w:?}");
        assert_eq!(
            found(&w, "libs/liba.so", "libb.so"),
            Some(&Place::Bundle("libs/libb.so".into()))
        );
    }

    /// A library with DT_RUNPATH (even empty) does not search the RPATH of its loaders.
    #[test]
    fn runpath_blocks_the_inherited_rpath() {
        let mut v = View::new();
        v.add_object(
            "pkg/ext.so",
            Arc::new(elf(None, &["liba.so"], &["$ORIGIN/../libs"], None)),
        );
        v.add_object(
            "libs/liba.so",
            Arc::new(elf(Some("liba.so"), &["libb.so"], &[], Some(&[]))),
        );
        v.add_object(
            "libs/libb.so",
            Arc::new(elf(Some("libb.so"), &[], &[], None)),
        );
        let p = policy_by_name("manylinux2014").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("pkg/ext.so").expect("walk");
        assert!(!w.ok());
        assert_eq!(found(&w, "libs/liba.so", "libb.so"), None);
    }

    /// DT_RUNPATH applies to the object's own needs only: not to what its needs need.
    #[test]
    fn runpath_is_not_inherited() {
        let mut v = View::new();
        v.add_object(
            "pkg/ext.so",
            Arc::new(elf(None, &["liba.so"], &[], Some(&["$ORIGIN/../libs"]))),
        );
        v.add_object(
            "libs/liba.so",
            Arc::new(elf(Some("liba.so"), &["libb.so"], &[], None)),
        );
        v.add_object(
            "libs/libb.so",
            Arc::new(elf(Some("libb.so"), &[], &[], None)),
        );
        let p = policy_by_name("manylinux2014").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("pkg/ext.so").expect("walk");
        assert_eq!(
            found(&w, "pkg/ext.so", "liba.so"),
            Some(&Place::Bundle("libs/liba.so".into()))
        );
        assert_eq!(found(&w, "libs/liba.so", "libb.so"), None);
    }

    /// A name matching the soname of an object loaded earlier is reused, even when the
    /// requesting object's own search path would not reach any file of that name.
    #[test]
    fn a_soname_already_loaded_wins() {
        let mut v = View::new();
        v.add_object(
            "bin/prog",
            Arc::new(elf(
                None,
                &["libx-1234.so", "liby.so"],
                &["$ORIGIN/../a"],
                None,
            )),
        );
        v.add_object(
            "a/libx-1234.so",
            Arc::new(elf(Some("libx.so.1"), &[], &[], None)),
        );
        v.add_object(
            "a/liby.so",
            Arc::new(elf(
                Some("liby.so"),
                &["libx.so.1"],
                &[],
                Some(&["$ORIGIN/../nothing"]),
            )),
        );
        let p = policy_by_name("manylinux2014").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("bin/prog").expect("walk");
        assert!(w.ok(), "{w:?}");
        let y = w
            .loaded
            .iter()
            .find(|l| l.obj.place == Place::Bundle("a/liby.so".into()))
            .expect("liby");
        assert_eq!(y.deps[0].via, Some(Via::Loaded));
        assert_eq!(
            y.deps[0].found,
            Some(Place::Bundle("a/libx-1234.so".into()))
        );
        // Alone, liby does not load.
        let (w, _) = m.program("a/liby.so").expect("walk");
        assert!(!w.ok());
    }

    /// Version needs are checked against the library that the file name resolved to: a
    /// bundled one by its definitions, a policy one by the policy's highest versions.
    #[test]
    fn version_needs_are_checked_against_the_provider() {
        let mut v = View::new();
        let mut ext = elf(None, &["libstdc++.so.6", "libc.so.6"], &["$ORIGIN"], None);
        ext.version_needs = vec![
            VersionNeed {
                file: "libstdc++.so.6".into(),
                versions: vec!["GLIBCXX_3.4.30".into()],
            },
            VersionNeed {
                file: "libc.so.6".into(),
                versions: vec!["GLIBC_2.34".into()],
            },
        ];
        let mut cxx = elf(Some("libstdc++.so.6"), &[], &[], None);
        cxx.version_defs = vec!["GLIBCXX_3.4".into(), "GLIBCXX_3.4.29".into()];
        v.add_object("m/ext.so", Arc::new(ext));
        v.add_object("m/libstdc++.so.6", Arc::new(cxx));
        let p = policy_by_name("manylinux_2_31").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("m/ext.so").expect("walk");
        assert_eq!(
            w.loaded[0].missing_versions,
            vec![
                "libstdc++.so.6: GLIBCXX_3.4.30".to_owned(),
                "libc.so.6: GLIBC_2.34".to_owned()
            ]
        );
        let p = policy_by_name("manylinux_2_35").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("m/ext.so").expect("walk");
        assert_eq!(
            w.loaded[0].missing_versions,
            vec!["libstdc++.so.6: GLIBCXX_3.4.30".to_owned()],
            "the bundled libstdc++ is the provider, not the target's"
        );
    }

    /// A probed target: its libraries are found by soname, and a need is checked against the
    /// versions the target's own library defines; a library the probe did not read falls
    /// back to the highest versions per prefix.
    #[test]
    fn a_probed_target_checks_versions_against_its_own_libraries() {
        let mut v = View::new();
        let mut ext = elf(
            None,
            &["libssl.so.3", "libz.so.1", "libgone.so.1"],
            &[],
            None,
        );
        ext.version_needs = vec![
            VersionNeed {
                file: "libssl.so.3".into(),
                versions: vec!["OPENSSL_3.0.0".into(), "OPENSSL_3.2.0".into()],
            },
            VersionNeed {
                file: "libz.so.1".into(),
                versions: vec!["ZLIB_1.2.9".into()],
            },
        ];
        v.add_object("m/ext.so", Arc::new(ext));
        let libraries: BTreeMap<String, Vec<String>> = [
            ("libssl.so.3", vec!["OPENSSL_3.0.0"]),
            ("libz.so.1", vec![]),
            ("libc.so.6", vec!["GLIBC_2.36"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let p = ManylinuxPolicy::from_target(
            "the target profile".into(),
            "2.36",
            &BTreeMap::new(),
            &libraries,
        )
        .expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("m/ext.so").expect("walk");
        assert_eq!(
            w.loaded[0].missing_versions,
            vec!["libssl.so.3: OPENSSL_3.2.0".to_owned()]
        );
        assert!(found(&w, "m/ext.so", "libz.so.1").is_some());
        assert!(found(&w, "m/ext.so", "libgone.so.1").is_none());
    }

    #[test]
    fn links_and_relocated_prefixes_lead_into_the_bundle() {
        let mut v = View::new();
        v.add_object(
            "env/bin/python3.11",
            Arc::new(elf(
                None,
                &["libpython3.11.so.1.0"],
                &["/opt/conda/envs/x/lib"],
                None,
            )),
        );
        v.add_object(
            "env/lib/libpython3.11.so.1.0",
            Arc::new(elf(Some("libpython3.11.so.1.0"), &[], &[], None)),
        );
        v.add_link("env/lib64", "lib");
        v.add_link("env/bin/python", "python3.11");
        v.relocate("/opt/conda/envs/x", "env");
        assert_eq!(
            v.canonical("env/lib64/libpython3.11.so.1.0").as_deref(),
            Some("env/lib/libpython3.11.so.1.0")
        );
        let p = policy_by_name("manylinux2014").expect("policy");
        let m = Model::new(&v, System::Policy(&p));
        let (w, _) = m.program("env/bin/python").expect("walk");
        assert!(w.ok(), "{w:?}");
    }
}
