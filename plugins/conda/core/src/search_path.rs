//! Absolute RPATH/RUNPATH entries that point into a bundled prefix, made `$ORIGIN`-relative.
//!
//! The new search path is almost always shorter than the absolute one, so it is written over
//! the old string in `.dynstr` and padded with NUL bytes: the file keeps its layout. When the
//! string is shared with another name (linkers merge string tails) or the new value is longer,
//! nothing is patched and the caller falls back to a binary prefix rewrite.

use goblin::elf::dynamic::{DT_RPATH, DT_RUNPATH};
use goblin::elf::Elf;

/// True when the bytes start like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

/// The outcome of looking at one ELF file's search paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchPath {
    /// No RPATH/RUNPATH entry points into a bundled prefix.
    Untouched,
    /// Patched: the new contents, and the old and new search paths for the log.
    Patched {
        data: Vec<u8>,
        old: String,
        new: String,
    },
    /// An entry points into a bundled prefix but could not be patched in place: why, the
    /// search path it should get, and whether it was a RUNPATH (else an RPATH).
    CannotPatch {
        why: String,
        entries: Vec<String>,
        runpath: bool,
    },
}

/// Rewrite the search paths of `data` (the file at bundle path `bundle_path`).
///
/// `map` turns an absolute directory on the build machine into its bundle path, or `None` when
/// it is not bundled.
pub fn make_relative(
    data: &[u8],
    bundle_path: &str,
    map: &dyn Fn(&str) -> Option<String>,
) -> SearchPath {
    let Ok(elf) = Elf::parse(data) else {
        return SearchPath::Untouched;
    };
    let Some(dynamic) = &elf.dynamic else {
        return SearchPath::Untouched;
    };
    let strtab = dynamic.info.strtab;
    let mut out: Option<Vec<u8>> = None;
    let mut olds = Vec::new();
    let mut news = Vec::new();
    for d in &dynamic.dyns {
        if d.d_tag != DT_RPATH && d.d_tag != DT_RUNPATH {
            continue;
        }
        let offset = d.d_val as usize;
        let Some(value) = elf.dynstrtab.get_at(offset) else {
            continue;
        };
        let mut changed = false;
        let entries: Vec<String> = value
            .split(':')
            .map(|entry| match map(entry) {
                Some(target) => {
                    changed = true;
                    origin_relative(bundle_path, &target)
                }
                None => entry.to_string(),
            })
            .collect();
        if !changed {
            continue;
        }
        let mut new_value = Vec::new();
        for e in entries {
            if !new_value.contains(&e) {
                new_value.push(e);
            }
        }
        let entries = new_value.clone();
        let new_value = new_value.join(":");
        let runpath = d.d_tag == DT_RUNPATH;
        if new_value.len() > value.len() {
            return SearchPath::CannotPatch {
                why: format!("the new search path `{new_value}` is longer than `{value}`"),
                entries,
                runpath,
            };
        }
        if shares_tail(&elf, offset, value.len()) {
            return SearchPath::CannotPatch {
                why: format!("the string `{value}` is shared with another name"),
                entries,
                runpath,
            };
        }
        let start = strtab + offset;
        let end = start + value.len();
        let buf = out.get_or_insert_with(|| data.to_vec());
        if end > buf.len() {
            return SearchPath::CannotPatch {
                why: "the string table lies outside the file".into(),
                entries,
                runpath,
            };
        }
        buf[start..start + new_value.len()].copy_from_slice(new_value.as_bytes());
        buf[start + new_value.len()..end].fill(0);
        olds.push(value.to_string());
        news.push(new_value);
    }
    match out {
        Some(data) => SearchPath::Patched {
            data,
            old: olds.join(" "),
            new: news.join(" "),
        },
        None => SearchPath::Untouched,
    }
}

/// `$ORIGIN/<path from the file's directory to target>`.
fn origin_relative(file: &str, target_dir: &str) -> String {
    let from = crate::paths::parent(file);
    let rel = crate::paths::relative(from, target_dir);
    if rel.is_empty() || rel == "." {
        "$ORIGIN".into()
    } else {
        format!("$ORIGIN/{rel}")
    }
}

/// True when another name in the dynamic string table starts inside `[offset+1, offset+len)`.
fn shares_tail(elf: &Elf, offset: usize, len: usize) -> bool {
    let inside = |o: usize| o > offset && o < offset + len;
    if let Some(dynamic) = &elf.dynamic {
        for d in &dynamic.dyns {
            let is_string = matches!(
                d.d_tag,
                goblin::elf::dynamic::DT_NEEDED
                    | goblin::elf::dynamic::DT_SONAME
                    | DT_RPATH
                    | DT_RUNPATH
            );
            if is_string && inside(d.d_val as usize) {
                return true;
            }
        }
    }
    if elf.dynsyms.iter().any(|s| inside(s.st_name)) {
        return true;
    }
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            if inside(need.vn_file) || need.iter().any(|aux| inside(aux.vna_name)) {
                return true;
            }
        }
    }
    if let Some(verdef) = &elf.verdef {
        for def in verdef.iter() {
            if def.iter().any(|aux| inside(aux.vda_name)) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_relative_paths() {
        assert_eq!(
            origin_relative("env/bin/python3", "env/lib"),
            "$ORIGIN/../lib"
        );
        assert_eq!(origin_relative("env/lib/libx.so", "env/lib"), "$ORIGIN");
        assert_eq!(
            origin_relative("env/lib/python3.11/lib-dynload/_ssl.so", "env/lib"),
            "$ORIGIN/../.."
        );
    }
}
