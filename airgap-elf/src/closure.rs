//! The transitive closure of needed libraries, as the loader would load them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::loader::{Loader, Object, Via};
use crate::{ElfFile, ElfKind, Result};

/// One needed name of an object and what it resolved to.
#[derive(Debug, Clone, Serialize)]
pub struct Dep {
    /// The `DT_NEEDED` name.
    pub name: String,
    /// The file the loader would open, `None` when not found.
    pub path: Option<PathBuf>,
    /// Which step found it.
    pub via: Option<Via>,
}

/// One object of the closure.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Its ELF data.
    #[serde(skip)]
    pub elf: Arc<ElfFile>,
    /// Its needed libraries, resolved.
    pub deps: Vec<Dep>,
    /// True for the objects the closure started from.
    pub root: bool,
}

/// A needed library the loader would not find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The `DT_NEEDED` name.
    pub name: String,
    /// The object that needs it.
    pub needed_by: PathBuf,
}

/// Every object reachable from the roots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Closure {
    /// Objects by path on this machine, the roots included.
    pub objects: BTreeMap<PathBuf, Node>,
    /// Names that could not be found.
    pub missing: Vec<Missing>,
}

impl Closure {
    /// Libraries reached that are not roots.
    pub fn libraries(&self) -> impl Iterator<Item = (&PathBuf, &Node)> {
        self.objects.iter().filter(|(_, n)| !n.root)
    }
}

/// Walk the needed libraries of `roots` transitively with `loader`. `executable`, when given,
/// is the program that loads the roots (its DT_RPATH applies to them, as for Python loading
/// extension modules with dlopen). Roots that are not ELF are an error; files the walk
/// reaches that cannot be parsed count as missing.
pub fn closure(loader: &Loader, roots: &[PathBuf], executable: Option<&Path>) -> Result<Closure> {
    let exe = match executable {
        Some(p) => Some(Object {
            path: p.to_path_buf(),
            elf: loader.parse(p)?,
        }),
        None => None,
    };
    let mut out = Closure::default();
    // Each queued object carries its chain of loaders (itself first).
    let mut queue: VecDeque<(PathBuf, Vec<Object>, bool)> = VecDeque::new();
    for r in roots {
        let elf = loader.parse(r)?;
        let obj = Object {
            path: r.clone(),
            elf,
        };
        let mut chain = vec![obj];
        chain.extend(exe.iter().cloned());
        queue.push_back((r.clone(), chain, true));
    }
    let mut seen: HashMap<PathBuf, ()> = HashMap::new();
    while let Some((path, chain, root)) = queue.pop_front() {
        if seen.insert(path.clone(), ()).is_some() {
            if root {
                if let Some(n) = out.objects.get_mut(&path) {
                    n.root = true;
                }
            }
            continue;
        }
        let Some(me) = chain.first() else { continue };
        let elf = me.elf.clone();
        let mut deps = Vec::new();
        if elf.kind != ElfKind::Other {
            for name in &elf.needed {
                match loader.resolve(name, &chain) {
                    Some(found) => {
                        if !seen.contains_key(&found.path) {
                            let mut sub = Vec::with_capacity(chain.len() + 1);
                            sub.push(Object {
                                path: found.path.clone(),
                                elf: found.elf.clone(),
                            });
                            sub.extend(chain.iter().cloned());
                            queue.push_back((found.path.clone(), sub, false));
                        }
                        deps.push(Dep {
                            name: name.clone(),
                            path: Some(found.path),
                            via: Some(found.via),
                        });
                    }
                    None => {
                        out.missing.push(Missing {
                            name: name.clone(),
                            needed_by: path.clone(),
                        });
                        deps.push(Dep {
                            name: name.clone(),
                            path: None,
                            via: None,
                        });
                    }
                }
            }
        }
        out.objects.insert(path, Node { elf, deps, root });
    }
    Ok(out)
}

/// What [`bench_closure`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Regular files looked at.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// ELF files among them (by content).
    pub elf_files: u64,
    /// Bytes of the ELF files.
    pub elf_bytes: u64,
    /// Objects in the closure (the ELF files and the libraries they reach).
    pub objects: u64,
    /// Libraries reached outside the tree.
    pub outside: u64,
    /// Needed names that were not found.
    pub missing: u64,
    /// Wall time of the whole walk, parse and resolution.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Walk a tree (an environment), find its ELF files by content, parse them in parallel and
/// compute their closure with this machine's loader. For the bench: "the closure of a 1 GB
/// environment in seconds".
pub fn bench_closure(root: &Path) -> Result<BenchReport> {
    use rayon::prelude::*;
    let start = Instant::now();
    let mut files = Vec::new();
    let mut bytes = 0u64;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_file() {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.push(entry.into_path());
        }
    }
    let loader = Loader::host();
    let elves: Vec<PathBuf> = files
        .par_iter()
        .filter(|p| crate::is_elf(p))
        .filter(|p| loader.parse(p).is_ok())
        .cloned()
        .collect();
    let elf_bytes = elves
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let c = closure(&loader, &elves, None)?;
    let outside = c.objects.keys().filter(|p| !p.starts_with(root)).count() as u64;
    Ok(BenchReport {
        files: files.len() as u64,
        bytes,
        elf_files: elves.len() as u64,
        elf_bytes,
        objects: c.objects.len() as u64,
        outside,
        missing: c.missing.len() as u64,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_of_this_test_reaches_libc() {
        let loader = Loader::host().with_ld_library_path(Vec::new());
        let exe = std::env::current_exe().expect("exe");
        let c = closure(&loader, std::slice::from_ref(&exe), None).expect("closure");
        assert!(c.objects[&exe].root);
        assert!(c
            .libraries()
            .any(|(p, _)| p.file_name().is_some_and(|n| n == "libc.so.6")));
        assert!(c.missing.is_empty(), "{:?}", c.missing);
    }
}
