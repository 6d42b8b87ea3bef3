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
    /// Patched: the bytes to write over the file's, and the old and new search paths for
    /// the log.
    Patched {
        edits: Vec<Edit>,
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

/// Bytes to write over a file's at an offset: edits, not a patched copy, so that a library of
/// hundreds of megabytes is patched while it is copied instead of in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Where the bytes go, from the start of the file.
    pub at: u64,
    /// The new bytes (the new search path, padded with NUL bytes to the old one's length).
    pub bytes: Vec<u8>,
}

/// `data` with `edits` written over it.
pub fn apply(data: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = data.to_vec();
    for e in edits {
        let at = e.at as usize;
        out[at..at + e.bytes.len()].copy_from_slice(&e.bytes);
    }
    out
}

/// Copy `from` to `to` with `edits` (inside the file, sorted by offset) written over it, one
/// window at a time.
pub fn copy_with_edits(
    from: &mut impl std::io::Read,
    to: &mut impl std::io::Write,
    edits: &[Edit],
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    loop {
        let n = airgap_io::read_full(from, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let window = &mut buf[..n];
        let end = pos + n as u64;
        for e in edits {
            let (start, stop) = (e.at, e.at + e.bytes.len() as u64);
            if stop <= pos || start >= end {
                continue;
            }
            // The part of the edit inside this window.
            let (from_at, to_at) = (start.max(pos), stop.min(end));
            let src = &e.bytes[(from_at - start) as usize..(to_at - start) as usize];
            window[(from_at - pos) as usize..(to_at - pos) as usize].copy_from_slice(src);
        }
        to.write_all(window)?;
        pos = end;
    }
}

/// The edits that make the search paths of `data` (the file at bundle path `bundle_path`)
/// relative to it.
///
/// `map` turns an absolute directory on the build machine into its bundle path, or `None` when
/// it is not bundled.
pub fn relative_edits(
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
    let mut edits = Vec::new();
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
        if start + value.len() > data.len() {
            return SearchPath::CannotPatch {
                why: "the string table lies outside the file".into(),
                entries,
                runpath,
            };
        }
        let mut bytes = new_value.clone().into_bytes();
        bytes.resize(value.len(), 0);
        edits.push(Edit {
            at: start as u64,
            bytes,
        });
        olds.push(value.to_string());
        news.push(new_value);
    }
    if edits.is_empty() {
        return SearchPath::Untouched;
    }
    edits.sort_by_key(|e| e.at);
    SearchPath::Patched {
        edits,
        old: olds.join(" "),
        new: news.join(" "),
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

    /// Edits at the start, across the copy's window boundary and at the end give the same
    /// bytes streamed as applied in memory.
    #[test]
    fn edits_streamed_equal_edits_applied() {
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        let edits = vec![
            Edit {
                at: 0,
                bytes: b"head".to_vec(),
            },
            Edit {
                at: (1 << 20) - 3,
                bytes: b"$ORIGIN\0\0".to_vec(),
            },
            Edit {
                at: data.len() as u64 - 2,
                bytes: b"zz".to_vec(),
            },
        ];
        let mut streamed = Vec::new();
        copy_with_edits(&mut &data[..], &mut streamed, &edits).unwrap();
        assert_eq!(streamed, apply(&data, &edits));
        assert_eq!(&streamed[(1 << 20) - 3..(1 << 20) + 6], b"$ORIGIN\0\0");
    }

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
