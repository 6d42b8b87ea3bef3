//! The transitive closure of needed libraries, as the loader would load them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
