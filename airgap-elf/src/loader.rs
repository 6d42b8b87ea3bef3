//! Finding a needed library the way glibc's `ld.so` does.
//!
//! Order (glibc `_dl_map_object`): a name with `/` is a path; else DT_RPATH of the requesting
//! object, then of its loader up to the executable (only when the requesting object has no
//! DT_RUNPATH); `LD_LIBRARY_PATH`; DT_RUNPATH of the requesting object only; `ld.so.cache`;
//! the default dirs. Each dir is probed first in its hwcaps subdirs. Files of the wrong class
//! or machine are skipped and the search goes on. `$ORIGIN` is the directory of the object
//! that holds the path; `$LIB` and `$PLATFORM` expand as on Debian x86_64.
//!
//! A loader can work on a foreign root filesystem ([`Loader::for_root`]): absolute paths are
//! then looked up under that root, its own `ld.so.cache` is read, and `LD_LIBRARY_PATH` is
//! empty. That is how a target image is checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::ldcache::{LdCache, FLAG_REQUIRED_MASK, FLAG_X8664_LIB64};
use crate::{ElfClass, ElfFile, Result};

/// Which step of the search found a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The name held a `/`.
    Path,
    /// DT_RPATH of the object or of one of its loaders.
    Rpath,
    /// `LD_LIBRARY_PATH`.
    LdLibraryPath,
    /// DT_RUNPATH of the object.
    Runpath,
    /// `/etc/ld.so.cache`.
    Cache,
    /// A default dir.
    Default,
    /// An object already loaded under that name or soname (earlier in breadth-first order,
    /// or by the program that dlopens the object) was reused.
    Loaded,
}

/// A library the loader would load.
#[derive(Debug, Clone)]
pub struct Found {
    /// The path opened (on this machine; under the root for a foreign root).
    pub path: PathBuf,
    /// Its ELF data.
    pub elf: Arc<ElfFile>,
    /// Which step found it.
    pub via: Via,
}

/// An object in the chain of loaders: the one asking first, the executable last.
#[derive(Debug, Clone)]
pub struct Object {
    /// Path of the object on this machine (its directory is `$ORIGIN`).
    pub path: PathBuf,
    /// Its ELF data.
    pub elf: Arc<ElfFile>,
}

impl Object {
    fn origin(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    }
}

/// The glibc loader, emulated.
#[derive(Debug)]
pub struct Loader {
    root: PathBuf,
    ld_library_path: Vec<String>,
    cache: Option<LdCache>,
    default_dirs: Vec<String>,
    hwcap_subdirs: Vec<String>,
    lib: String,
    platform: String,
    elves: Mutex<HashMap<PathBuf, Option<Arc<ElfFile>>>>,
    memo: Mutex<Memo>,
}

/// Resolution results by (search dirs, name, class, machine).
type Memo = HashMap<(Vec<PathBuf>, String, ElfClass, u16), Option<(PathBuf, Via)>>;

/// Debian's multiarch triplet for an ELF machine and class.
fn triplet(class: ElfClass, machine: u16) -> &'static str {
    match (class, machine) {
        (ElfClass::Elf64, 62) => "x86_64-linux-gnu",
        (ElfClass::Elf32, 3) => "i386-linux-gnu",
        (ElfClass::Elf64, 183) => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    }
}

impl Loader {
    /// The loader of this machine: `/etc/ld.so.cache`, `LD_LIBRARY_PATH` from the environment.
    pub fn host() -> Loader {
        let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let mut loader = Loader::for_root(Path::new("/"));
        loader.ld_library_path = split_search(&ld);
        loader
    }

    /// The loader of a root filesystem mounted at `root` (a debootstrap root, a target image):
    /// its own cache and default dirs, no `LD_LIBRARY_PATH`.
    pub fn for_root(root: &Path) -> Loader {
        let cache = LdCache::read(&root.join("etc/ld.so.cache")).ok();
        let t = triplet(ElfClass::Elf64, 62);
        Loader {
            root: root.to_path_buf(),
            ld_library_path: Vec::new(),
            cache,
            default_dirs: vec![
                format!("/lib/{t}"),
                format!("/usr/lib/{t}"),
                "/lib".into(),
                "/usr/lib".into(),
            ],
            hwcap_subdirs: hwcap_subdirs(),
            lib: format!("lib/{t}"),
            platform: "x86_64".into(),
            elves: Mutex::new(HashMap::new()),
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// Use this `LD_LIBRARY_PATH` instead (entries as in the variable).
    pub fn with_ld_library_path(mut self, entries: Vec<String>) -> Loader {
        self.ld_library_path = entries;
        self
    }

    /// The root filesystem this loader looks at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed `ld.so.cache`, when there is one.
    pub fn cache(&self) -> Option<&LdCache> {
        self.cache.as_ref()
    }

    /// Parse an ELF file once and keep it (many objects need the same libraries).
    pub fn parse(&self, path: &Path) -> Result<Arc<ElfFile>> {
        if let Some(Some(elf)) = self.lock_elves().get(path) {
            return Ok(elf.clone());
        }
        let elf = Arc::new(ElfFile::parse(path)?);
        self.lock_elves()
            .insert(path.to_path_buf(), Some(elf.clone()));
        Ok(elf)
    }

    /// Parse, or `None` for a missing or non-ELF file (remembered, so probes stay cheap).
    fn try_parse(&self, path: &Path) -> Option<Arc<ElfFile>> {
        if let Some(hit) = self.lock_elves().get(path) {
            return hit.clone();
        }
        let elf = if path.is_file() {
            ElfFile::parse(path).ok().map(Arc::new)
        } else {
            None
        };
        self.lock_elves().insert(path.to_path_buf(), elf.clone());
        elf
    }

    fn lock_elves(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Option<Arc<ElfFile>>>> {
        self.elves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A path as seen from inside the root, turned into a path on this machine.
    pub fn in_root(&self, path: &str) -> PathBuf {
        if self.root == Path::new("/") {
            PathBuf::from(path)
        } else {
            self.root.join(path.trim_start_matches('/'))
        }
    }

    /// Expand `$LIB` and `$PLATFORM` (not `$ORIGIN`) in one search-path entry.
    pub fn expand_lib_platform(&self, entry: &str) -> String {
        let mut s = entry.to_owned();
        for (token, value) in [
            ("${LIB}", self.lib.as_str()),
            ("$LIB", self.lib.as_str()),
            ("${PLATFORM}", self.platform.as_str()),
            ("$PLATFORM", self.platform.as_str()),
        ] {
            s = s.replace(token, value);
        }
        s
    }

    /// The hwcaps subdirs probed in every search dir, best first.
    pub fn hwcap_subdirs(&self) -> &[String] {
        &self.hwcap_subdirs
    }

    /// Find `name` in one directory (on this machine, or under the root: `dir` is already
    /// turned into a local path), trying the hwcaps subdirs first; wrong-class files are
    /// skipped.
    pub fn probe(
        &self,
        dir: &Path,
        name: &str,
        via: Via,
        class: ElfClass,
        machine: u16,
    ) -> Option<Found> {
        self.probe_dir(dir, name, via, &|elf: &ElfFile| {
            elf.class == class && elf.machine == machine
        })
    }

    /// The system part of the search: `ld.so.cache`, then the default dirs (what is left
    /// when no search path of the objects found `name`).
    pub fn resolve_system(&self, name: &str, class: ElfClass, machine: u16) -> Option<Found> {
        self.search(name, &[], (class, machine))
    }

    /// Expand `$ORIGIN`, `$LIB` and `$PLATFORM` in one search-path entry of `object`.
    /// Relative entries without `$ORIGIN` depend on the working directory: they are dropped.
    pub fn expand(&self, entry: &str, origin: &Path) -> Option<PathBuf> {
        let mut s = entry.to_owned();
        for (token, value) in [
            ("$LIB", self.lib.as_str()),
            ("${LIB}", self.lib.as_str()),
            ("$PLATFORM", self.platform.as_str()),
            ("${PLATFORM}", self.platform.as_str()),
        ] {
            s = s.replace(token, value);
        }
        for token in ["${ORIGIN}", "$ORIGIN"] {
            if let Some(rest) = s.strip_prefix(token) {
                let rest = rest.trim_start_matches('/');
                return Some(if rest.is_empty() {
                    origin.to_path_buf()
                } else {
                    normalize(&origin.join(rest))
                });
            }
        }
        if s.contains("$ORIGIN") || s.contains("${ORIGIN}") {
            // $ORIGIN in the middle of an entry: glibc expands it anywhere.
            let o = origin.to_string_lossy();
            s = s.replace("${ORIGIN}", &o).replace("$ORIGIN", &o);
            return Some(PathBuf::from(s));
        }
        if s.starts_with('/') {
            Some(self.in_root(&s))
        } else {
            None
        }
    }

    /// The directories searched for a name needed by `chain[0]` (its loaders follow, the
    /// executable last), with the step each belongs to; the cache and default dirs follow
    /// them.
    pub fn search_dirs(&self, chain: &[Object]) -> Vec<(PathBuf, Via)> {
        let mut dirs = Vec::new();
        let Some(first) = chain.first() else {
            return dirs;
        };
        if !first.elf.has_runpath {
            for obj in chain {
                // An object that has a RUNPATH contributes no RPATH to the chain.
                if obj.elf.has_runpath {
                    continue;
                }
                let origin = obj.origin();
                for e in &obj.elf.rpath {
                    if let Some(d) = self.expand(e, &origin) {
                        dirs.push((d, Via::Rpath));
                    }
                }
            }
        }
        let origin = first.origin();
        for e in &self.ld_library_path {
            if let Some(d) = self.expand(e, &origin) {
                dirs.push((d, Via::LdLibraryPath));
            }
        }
        for e in &first.elf.runpath {
            if let Some(d) = self.expand(e, &origin) {
                dirs.push((d, Via::Runpath));
            }
        }
        dirs
    }

    /// Where the loader finds `name` for `chain[0]`; `None` when it cannot.
    pub fn resolve(&self, name: &str, chain: &[Object]) -> Option<Found> {
        let first = chain.first()?;
        let want = (first.elf.class, first.elf.machine);
        if name.contains('/') {
            let path = if name.starts_with('/') {
                self.in_root(name)
            } else {
                PathBuf::from(name)
            };
            let elf = self.try_parse(&path)?;
            return Some(Found {
                path,
                elf,
                via: Via::Path,
            });
        }
        let dirs = self.search_dirs(chain);
        let key_dirs: Vec<PathBuf> = dirs.iter().map(|(d, _)| d.clone()).collect();
        let key = (key_dirs, name.to_owned(), want.0, want.1);
        if let Some(hit) = self.lock_memo().get(&key) {
            return hit.as_ref().and_then(|(path, via)| {
                self.try_parse(path).map(|elf| Found {
                    path: path.clone(),
                    elf,
                    via: *via,
                })
            });
        }
        let found = self.search(name, &dirs, want);
        self.lock_memo()
            .insert(key, found.as_ref().map(|f| (f.path.clone(), f.via)));
        found
    }

    fn lock_memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn search(&self, name: &str, dirs: &[(PathBuf, Via)], want: (ElfClass, u16)) -> Option<Found> {
        let ok = |elf: &ElfFile| elf.class == want.0 && elf.machine == want.1;
        for (dir, via) in dirs {
            if let Some(f) = self.probe_dir(dir, name, *via, &ok) {
                return Some(f);
            }
        }
        if let Some(cache) = &self.cache {
            for entry in cache.lookup(name) {
                let arch_ok = match want {
                    (ElfClass::Elf64, 62) => entry.flags & FLAG_REQUIRED_MASK == FLAG_X8664_LIB64,
                    _ => true,
                };
                if !arch_ok {
                    continue;
                }
                let path = self.in_root(&entry.path.to_string_lossy());
                if let Some(elf) = self.try_parse(&path) {
                    if ok(&elf) {
                        return Some(Found {
                            path,
                            elf,
                            via: Via::Cache,
                        });
                    }
                }
            }
        }
        for dir in &self.default_dirs {
            let dir = self.in_root(dir);
            if let Some(f) = self.probe_dir(&dir, name, Via::Default, &ok) {
                return Some(f);
            }
        }
        None
    }

    fn probe_dir(
        &self,
        dir: &Path,
        name: &str,
        via: Via,
        ok: &dyn Fn(&ElfFile) -> bool,
    ) -> Option<Found> {
        for sub in &self.hwcap_subdirs {
            let path = dir.join(sub).join(name);
            if let Some(elf) = self.try_parse(&path) {
                if ok(&elf) {
                    return Some(Found { path, elf, via });
                }
            }
        }
        let path = dir.join(name);
        let elf = self.try_parse(&path)?;
        ok(&elf).then_some(Found { path, elf, via })
    }
}

/// Split a `:`/`;`-separated search path as glibc does for `LD_LIBRARY_PATH`.
pub fn split_search(s: &str) -> Vec<String> {
    s.split([':', ';'])
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `a/b/../c` -> `a/c` without touching the filesystem ($ORIGIN paths are lexical in glibc).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The hwcaps subdirs glibc probes on this CPU, best first (glibc >= 2.33), then the legacy
/// ones older glibc used.
fn hwcap_subdirs() -> Vec<String> {
    let mut subs = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let v2 = std::is_x86_feature_detected!("sse4.2")
            && std::is_x86_feature_detected!("popcnt")
            && std::is_x86_feature_detected!("ssse3");
        let v3 = v2
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("bmi2")
            && std::is_x86_feature_detected!("fma");
        let v4 = v3 && std::is_x86_feature_detected!("avx512f");
        if v4 {
            subs.push("glibc-hwcaps/x86-64-v4".into());
        }
        if v3 {
            subs.push("glibc-hwcaps/x86-64-v3".into());
        }
        if v2 {
            subs.push("glibc-hwcaps/x86-64-v2".into());
        }
        subs.push("tls/x86_64".into());
        subs.push("tls".into());
        subs.push("x86_64".into());
    }
    subs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe_object(loader: &Loader) -> Object {
        let path = std::env::current_exe().expect("exe");
        let elf = loader.parse(&path).expect("parse");
        Object { path, elf }
    }

    #[test]
    fn finds_libc_like_the_loader() {
        let loader = Loader::host().with_ld_library_path(Vec::new());
        let obj = exe_object(&loader);
        let found = loader.resolve("libc.so.6", &[obj]).expect("libc found");
        assert!(found.path.ends_with("libc.so.6"));
        assert!(matches!(found.via, Via::Cache | Via::Default));
    }

    #[test]
    fn ld_library_path_comes_before_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = Loader::host().with_ld_library_path(Vec::new());
        let obj = exe_object(&real);
        let libc = real
            .resolve("libc.so.6", std::slice::from_ref(&obj))
            .expect("libc")
            .path;
        std::fs::copy(&libc, dir.path().join("libc.so.6")).expect("copy");
        let loader =
            Loader::host().with_ld_library_path(vec![dir.path().to_string_lossy().into_owned()]);
        let found = loader.resolve("libc.so.6", &[obj]).expect("found");
        assert_eq!(found.via, Via::LdLibraryPath);
        assert_eq!(found.path, dir.path().join("libc.so.6"));
    }

    #[test]
    fn expands_origin_lexically() {
        let loader = Loader::for_root(Path::new("/"));
        let d = loader
            .expand("$ORIGIN/../lib", Path::new("/opt/env/bin"))
            .expect("expanded");
        assert_eq!(d, PathBuf::from("/opt/env/lib"));
        assert_eq!(
            loader.expand("${ORIGIN}", Path::new("/a")),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(loader.expand("relative/dir", Path::new("/a")), None);
        assert_eq!(
            loader.expand("/usr/$LIB", Path::new("/a")),
            Some(PathBuf::from("/usr/lib/x86_64-linux-gnu"))
        );
    }

    #[test]
    fn a_foreign_root_keeps_paths_inside_it() {
        let loader = Loader::for_root(Path::new("/srv/root"));
        assert_eq!(
            loader.in_root("/usr/lib/libz.so.1"),
            PathBuf::from("/srv/root/usr/lib/libz.so.1")
        );
    }
}
