//! Which walks a bundle's verdict rests on: one order of roots, shared by the target check and
//! the syslibs plugin, so that what syslibs completes is exactly what the check then judges.
//!
//! Roots are the executables and the Python extension modules (each extension `dlopen()`ed into
//! the started bundled interpreter); what they need loads with them. Libraries no root reaches
//! load on demand, if ever: first those nothing in the bundle names (the plugins themselves),
//! then the rest.

use std::collections::{BTreeSet, HashSet};

use rayon::prelude::*;

use crate::model::{Model, Obj, Place, Process, Walk};
use crate::ElfFile;

/// Why a walk starts where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootKind {
    /// A program the user runs (PT_INTERP), the bundled interpreter first.
    Executable,
    /// A Python extension module, imported by the interpreter.
    Extension,
    /// A library nothing reaches from a root: `dlopen()`ed, if ever.
    OnDemand,
}

/// One walk of the bundle and the kind of its root (its first loaded object).
#[derive(Debug, Clone)]
pub struct RootWalk {
    /// Why the walk starts at its first object.
    pub kind: RootKind,
    /// What loads, breadth-first.
    pub walk: Walk,
    /// `dlopen()`ed into the started interpreter (the first walk), which loads; when the
    /// interpreter does not load there, extensions are walked on their own.
    pub in_interpreter: bool,
}

/// Whether a bundle path is a Python extension module: `*.cpython-*.so`, `*.abi3.so`,
/// `*.pypy*.so`, or a plain `*.so` not named `lib*` under site-packages, lib-dynload or in
/// a wheel (whose root is site-packages).
pub fn is_extension_module(path: &str) -> bool {
    let name = file_name(path);
    if !name.ends_with(".so") {
        return false;
    }
    if name.contains(".cpython-") || name.ends_with(".abi3.so") || name.contains(".pypy") {
        return true;
    }
    !name.starts_with("lib")
        && path
            .split('/')
            .any(|p| p == "site-packages" || p == "lib-dynload" || p.ends_with(".whl!"))
}

/// An executable the user runs (PT_INTERP), not a library that also has one (libc, Qt's
/// libraries).
pub fn is_program(path: &str, elf: &ElfFile) -> bool {
    let name = file_name(path);
    elf.interpreter.is_some() && !(name.starts_with("lib") && name.contains(".so"))
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// Every walk of the bundle, in the order the verdict reads them: the interpreter at
/// `python_executable` (a bundle path) when there is one, every executable and extension module
/// of `objects` (bundle paths in path order), then the on-demand libraries. An extension is
/// `dlopen()`ed into the started interpreter when the interpreter loads, else walked on its own.
/// Root walks are independent of one another and run in parallel.
pub fn walk_bundle(
    model: &Model<'_>,
    objects: &[(&str, &ElfFile)],
    python_executable: Option<&str>,
) -> Vec<RootWalk> {
    let started = python_executable.and_then(|exe| started_interpreter(model, exe));
    let mut out: Vec<RootWalk> = Vec::new();
    let mut rooted: HashSet<(String, RootKind)> = HashSet::new();
    if let Some((walk, _, _)) = &started {
        if let Some(Place::Bundle(p)) = walk.loaded.first().map(|l| &l.obj.place) {
            rooted.insert((p.clone(), RootKind::Executable));
        }
        out.push(RootWalk {
            kind: RootKind::Executable,
            walk: walk.clone(),
            in_interpreter: false,
        });
    }
    // An interpreter that does not start there loads no extension: each is then judged on its
    // own, as a process of its own would load it (and as the real loader shows it).
    let interpreter = started.as_ref().filter(|(walk, _, _)| walk.ok());
    let roots: Vec<(&str, RootKind)> = objects
        .iter()
        .filter_map(|(path, elf)| {
            let kind = if is_extension_module(path) {
                RootKind::Extension
            } else if is_program(path, elf) {
                RootKind::Executable
            } else {
                return None;
            };
            let canonical = model.object(path).map(|o| o.place);
            let done = matches!(canonical, Some(Place::Bundle(ref c)) if rooted.contains(&(c.clone(), kind)));
            (!done).then_some((*path, kind))
        })
        .collect();
    let walks: Vec<Option<RootWalk>> = roots
        .par_iter()
        .map(|(path, kind)| match (&interpreter, kind) {
            (Some((_, process, opener)), RootKind::Extension) if !path.contains(".whl!/") => {
                let (walk, _) = model.dlopen(path, opener, process.clone())?;
                Some(RootWalk {
                    kind: *kind,
                    walk,
                    in_interpreter: true,
                })
            }
            _ => model.program(path).map(|(walk, _)| RootWalk {
                kind: *kind,
                walk,
                in_interpreter: false,
            }),
        })
        .collect();
    for w in walks.into_iter().flatten() {
        let root = match w.walk.loaded.first().map(|l| &l.obj.place) {
            Some(Place::Bundle(p)) => Some(p.clone()),
            _ => None,
        };
        // A root walked twice (two paths to one file): its first walk counts.
        if let Some(root) = root {
            if !rooted.insert((root, w.kind)) {
                continue;
            }
        }
        out.push(w);
    }
    let mut reached: HashSet<String> = HashSet::new();
    for w in &out {
        reach(&w.walk, &mut reached);
    }
    let named: BTreeSet<&str> = objects
        .iter()
        .flat_map(|(_, elf)| elf.needed.iter().map(String::as_str))
        .collect();
    for pass in 0..2 {
        for (path, elf) in objects {
            if reached.contains(*path) {
                continue;
            }
            let top =
                elf.soname().is_none_or(|s| !named.contains(s)) && !named.contains(file_name(path));
            if pass == 0 && !top {
                continue;
            }
            if let Some((walk, _)) = model.program(path) {
                reach(&walk, &mut reached);
                out.push(RootWalk {
                    kind: RootKind::OnDemand,
                    walk,
                    in_interpreter: false,
                });
            }
        }
    }
    out
}

/// The bundled interpreter, started: its walk, the process, and the chain that
/// `dlopen()`s extension modules (libpython first when the executable links it, then the
/// executable).
fn started_interpreter(model: &Model<'_>, exe: &str) -> Option<(Walk, Process, Vec<Obj>)> {
    let obj = model.object(exe)?;
    let Place::Bundle(path) = obj.place.clone() else {
        return None;
    };
    let (walk, process) = model.program(&path)?;
    let libpython = process
        .objects()
        .iter()
        .find(|o| {
            o.elf
                .as_ref()
                .and_then(|e| e.soname.as_deref())
                .is_some_and(|s| s.starts_with("libpython"))
        })
        .cloned();
    let mut opener: Vec<Obj> = libpython.into_iter().collect();
    opener.push(obj);
    Some((walk, process, opener))
}

fn reach(walk: &Walk, reached: &mut HashSet<String>) {
    for l in &walk.loaded {
        if let Place::Bundle(p) = &l.obj.place {
            reached.insert(p.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::model::{System, View};
    use crate::policy::policy_by_name;
    use crate::{ElfClass, ElfKind};

    fn elf(interp: bool, soname: Option<&str>, needed: &[&str], rpath: &[&str]) -> ElfFile {
        ElfFile {
            path: PathBuf::from("x"),
            class: ElfClass::Elf64,
            machine: 62,
            kind: if interp {
                ElfKind::Executable
            } else {
                ElfKind::Shared
            },
            interpreter: interp.then(|| "/lib64/ld-linux-x86-64.so.2".to_owned()),
            soname: soname.map(str::to_owned),
            needed: needed.iter().map(|s| (*s).to_owned()).collect(),
            rpath: rpath.iter().map(|s| (*s).to_owned()).collect(),
            runpath: Vec::new(),
            has_runpath: false,
            version_needs: Vec::new(),
            version_defs: Vec::new(),
            size: 0,
        }
    }

    /// A Python installation: `bin/python` (RPATH `$ORIGIN/../lib`) links libpython; an
    /// extension module with no search path of its own needs `libhelper.so.1` from `lib/`;
    /// a plugin library nothing names needs a library nobody has.
    fn bundle() -> Vec<(&'static str, ElfFile)> {
        vec![
            (
                "py/bin/python",
                elf(true, None, &["libpython3.11.so.1.0"], &["$ORIGIN/../lib"]),
            ),
            (
                "py/lib/libpython3.11.so.1.0",
                elf(false, Some("libpython3.11.so.1.0"), &[], &[]),
            ),
            (
                "py/lib/libhelper.so.1",
                elf(false, Some("libhelper.so.1"), &[], &[]),
            ),
            (
                "py/lib/python3.11/site-packages/m.cpython-311-x86_64-linux-gnu.so",
                elf(false, None, &["libhelper.so.1"], &[]),
            ),
            (
                "py/lib/plugins/libtransport.so",
                elf(false, Some("libtransport.so"), &["libfabric.so.1"], &[]),
            ),
        ]
    }

    fn walks(python: Option<&str>) -> Vec<RootWalk> {
        walks_of(&bundle(), python)
    }

    /// The walks of `objects` on a manylinux_2_28 target.
    fn walks_of(objects: &[(&'static str, ElfFile)], python: Option<&str>) -> Vec<RootWalk> {
        let mut view = View::new();
        for (p, e) in objects {
            view.add_object(*p, Arc::new(e.clone()));
        }
        let policy = policy_by_name("manylinux_2_28").expect("policy");
        let model = Model::new(&view, System::Policy(&policy));
        let refs: Vec<(&str, &ElfFile)> = objects.iter().map(|(p, e)| (*p, e)).collect();
        walk_bundle(&model, &refs, python)
    }

    fn extension(walks: &[RootWalk]) -> &RootWalk {
        walks
            .iter()
            .find(|w| w.kind == RootKind::Extension)
            .expect("an extension walk")
    }

    #[test]
    fn an_extension_loads_in_the_started_interpreter_and_finds_libraries_through_its_rpath() {
        let w = walks(Some("py/bin/python"));
        assert_eq!(w[0].kind, RootKind::Executable);
        assert!(extension(&w).walk.ok(), "{:?}", extension(&w));
        assert!(extension(&w).in_interpreter);
        // Alone, as a program, the module's own search path does not reach lib/.
        let alone = walks(None);
        assert!(!extension(&alone).walk.ok(), "{:?}", extension(&alone));
    }

    #[test]
    fn an_interpreter_that_does_not_load_there_leaves_each_extension_on_its_own() {
        let mut objects = bundle();
        objects[0].1.needed.push("libnowhere.so.1".into());
        let w = walks_of(&objects, Some("py/bin/python"));
        assert!(!w[0].walk.ok());
        let ext = extension(&w);
        assert!(!ext.in_interpreter, "{ext:?}");
        // On its own, nothing inherited: the module's own search path does not reach lib/.
        assert!(!ext.walk.ok(), "{ext:?}");
    }

    #[test]
    fn a_library_no_root_reaches_is_walked_once_on_demand() {
        let w = walks(Some("py/bin/python"));
        let on_demand: Vec<_> = w
            .iter()
            .filter(|w| w.kind == RootKind::OnDemand)
            .map(|w| &w.walk.loaded[0].obj.place)
            .collect();
        assert_eq!(
            on_demand,
            vec![&Place::Bundle("py/lib/plugins/libtransport.so".into())],
            "{w:?}"
        );
        // The interpreter is one root, not walked again as an executable of the list.
        let executables = w.iter().filter(|w| w.kind == RootKind::Executable).count();
        assert_eq!(executables, 1);
    }
}
