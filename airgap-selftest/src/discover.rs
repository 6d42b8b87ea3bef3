//! What a tree holds to test: its ELF shared objects (extension modules where the interpreter
//! would import them from, libraries otherwise) and its distributions' top-level modules.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ItemKind;

/// One thing to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Library, extension or module.
    pub kind: ItemKind,
    /// How the record and the table name it: a bundle path, or a module name.
    pub name: String,
    /// What the interpreter is given: a file for a library, a module name otherwise.
    pub target: String,
}

/// Where the interpreter imports from, and what its extension modules end with.
struct Interpreter {
    path: Vec<PathBuf>,
    suffixes: Vec<String>,
}

/// Ask `python` (isolated, as the test runs it) for its `sys.path` and extension suffixes.
fn ask(python: &Path) -> Result<Interpreter, String> {
    let code = "import sys, json, importlib.machinery as m\n\
                print(json.dumps({'path': sys.path, 'suffixes': m.EXTENSION_SUFFIXES}))";
    let out = Command::new(python)
        .args(["-I", "-B", "-c", code])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(crate::run::last_line(&err)
            .unwrap_or_else(|| format!("{} exited with {}", python.display(), out.status)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} printed no sys.path: {e}", python.display()))?;
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    Ok(Interpreter {
        path: strings("path")
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p)))
            .collect(),
        suffixes: strings("suffixes"),
    })
}

/// Every item of the tree at `root` (bundle path `prefix`), for `python`: libraries and
/// extensions in path order, then the modules by name. When the interpreter does not even
/// start, that is the one item, and it fails.
pub fn discover(root: &Path, prefix: &str, python: &Path) -> Vec<Item> {
    let interp = match ask(python) {
        Ok(i) => i,
        Err(_) => {
            // Run as a module import, it fails again with the interpreter's own words.
            return vec![Item {
                kind: ItemKind::Module,
                name: "sys".into(),
                target: "sys".into(),
            }];
        }
    };
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut items = shared_objects(&root, prefix, &interp);
    items.extend(modules(&root, &interp));
    items
}

/// The bundle path of `path` below `root`.
fn bundle_path(root: &Path, prefix: &str, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.to_str()?;
    Some(match prefix.trim_end_matches('/') {
        "" => rel.to_string(),
        p => format!("{p}/{rel}"),
    })
}

/// The ELF shared objects without an interpreter of their own (`PT_INTERP`), once per file
/// (hard links are one), outside `.airgap/`.
fn shared_objects(root: &Path, prefix: &str, interp: &Interpreter) -> Vec<Item> {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != ".airgap");
    for entry in walk.flatten() {
        // The magic first: cheaper than parsing every file.
        if !entry.file_type().is_file() || !airgap_elf::is_elf(entry.path()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(elf) = airgap_elf::ElfFile::parse(entry.path()) else {
            continue;
        };
        if elf.kind != airgap_elf::ElfKind::Shared || elf.interpreter.is_some() {
            continue;
        }
        let Some(name) = bundle_path(root, prefix, entry.path()) else {
            continue;
        };
        let module = airgap_elf::roots::is_extension_module(&name)
            .then(|| module_name(entry.path(), interp))
            .flatten();
        items.push(match module {
            Some(module) => Item {
                kind: ItemKind::Extension,
                name,
                target: module,
            },
            None => Item {
                kind: ItemKind::Library,
                name,
                target: entry.path().to_string_lossy().into_owned(),
            },
        });
    }
    items
}

/// The dotted name the interpreter imports an extension file by: its path below the deepest
/// `sys.path` directory that holds it, the extension suffix cut off; none when no `sys.path`
/// directory holds it (then it is loaded as a library).
fn module_name(file: &Path, interp: &Interpreter) -> Option<String> {
    let base = interp
        .path
        .iter()
        .filter(|dir| file.starts_with(dir))
        .max_by_key(|dir| dir.components().count())?;
    let rel = file.strip_prefix(base).ok()?.to_str()?;
    let (dirs, name) = rel.rsplit_once('/').map_or(("", rel), |(d, n)| (d, n));
    let stem = interp
        .suffixes
        .iter()
        .filter_map(|s| name.strip_suffix(s.as_str()))
        .min_by_key(|s| s.len())
        .or_else(|| name.split('.').next())?;
    let dotted: Vec<&str> = dirs
        .split('/')
        .filter(|d| !d.is_empty())
        .chain([stem])
        .collect();
    dotted
        .iter()
        .all(|p| is_identifier(p))
        .then(|| dotted.join("."))
}

/// The top-level modules of the distributions installed in the `sys.path` directories
/// inside the tree: `top_level.txt`, else the first components of `RECORD`.
fn modules(root: &Path, interp: &Interpreter) -> Vec<Item> {
    let mut names = BTreeSet::new();
    for dir in interp.path.iter().filter(|d| d.starts_with(root)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for info in entries.flatten().map(|e| e.path()) {
            if info.extension().is_none_or(|x| x != "dist-info") {
                continue;
            }
            names.extend(top_level(&info, &interp.suffixes));
        }
    }
    names
        .into_iter()
        .map(|name| Item {
            kind: ItemKind::Module,
            target: name.clone(),
            name,
        })
        .collect()
}

/// One distribution's top-level modules.
fn top_level(info: &Path, suffixes: &[String]) -> Vec<String> {
    if let Ok(text) = std::fs::read_to_string(info.join("top_level.txt")) {
        return text
            .lines()
            .map(str::trim)
            .filter(|n| is_identifier(n))
            .map(str::to_string)
            .collect();
    }
    let Ok(record) = std::fs::read_to_string(info.join("RECORD")) else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    for line in record.lines() {
        let path = line.split(',').next().unwrap_or("");
        let first = path.split('/').next().unwrap_or("");
        let name = if path.contains('/') {
            // A package: a directory with Python in it.
            first
        } else if let Some(stem) = first.strip_suffix(".py") {
            stem
        } else if let Some(stem) = suffixes.iter().find_map(|s| first.strip_suffix(s.as_str())) {
            stem
        } else {
            continue;
        };
        if is_identifier(name) && !path.starts_with("..") {
            out.insert(name.to_string());
        }
    }
    out.into_iter().collect()
}

/// A Python identifier of ASCII letters, digits and `_`, not starting with a digit.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_names_come_from_the_deepest_sys_path_directory() {
        let interp = Interpreter {
            path: vec![
                PathBuf::from("/e/lib/python3.11"),
                PathBuf::from("/e/lib/python3.11/lib-dynload"),
                PathBuf::from("/e/lib/python3.11/site-packages"),
            ],
            suffixes: vec![
                ".cpython-311-x86_64-linux-gnu.so".into(),
                ".abi3.so".into(),
                ".so".into(),
            ],
        };
        let name = |p: &str| module_name(Path::new(p), &interp);
        assert_eq!(
            name("/e/lib/python3.11/site-packages/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so").as_deref(),
            Some("numpy.core._multiarray_umath")
        );
        assert_eq!(
            name("/e/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so").as_deref(),
            Some("_ssl")
        );
        assert_eq!(
            name("/e/lib/python3.11/site-packages/cryptography/hazmat/bindings/_rust.abi3.so")
                .as_deref(),
            Some("cryptography.hazmat.bindings._rust")
        );
        assert_eq!(name("/elsewhere/x.so"), None);
        assert_eq!(name("/e/lib/python3.11/site-packages/pkg-data/x.so"), None);
    }

    #[test]
    fn top_level_modules_come_from_record_without_top_level_txt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = dir.path().join("x-1.dist-info");
        std::fs::create_dir(&info).expect("mkdir");
        std::fs::write(
            info.join("RECORD"),
            "x/__init__.py,,\nx/y.py,,\nsix.py,,\n_c.cpython-311-x86_64-linux-gnu.so,,\n\
             x-1.dist-info/METADATA,,\n../../bin/tool,,\n",
        )
        .expect("write");
        let suffixes = vec![".cpython-311-x86_64-linux-gnu.so".to_string()];
        assert_eq!(top_level(&info, &suffixes), vec!["_c", "six", "x"]);
    }
}
