//! Reading glibc's `/etc/ld.so.cache`, in the new format (`glibc-ld.so.cache1.1`, glibc >= 2.32
//! writes only this) and the old/compat format (`ld.so-1.7.0`, optionally followed by a new
//! one). Parsing the file beats running `ldconfig -p`: it works on a foreign root filesystem
//! (a debootstrap root, a target image) and costs no process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{io_err, Error, Result};

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";

/// `FLAG_ELF_LIBC6`: an ELF library for glibc.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
/// `FLAG_X8664_LIB64`: a 64-bit x86 library.
pub const FLAG_X8664_LIB64: i32 = 0x0300;
/// Mask of the architecture bits.
pub const FLAG_REQUIRED_MASK: i32 = 0xff00;

/// One library of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The name looked up (the soname).
    pub name: String,
    /// The path it maps to.
    pub path: PathBuf,
    /// Type and architecture flags.
    pub flags: i32,
}

/// The parsed cache: names to paths, in cache order (the loader takes the first match of the
/// right architecture).
#[derive(Debug, Clone, Default)]
pub struct LdCache {
    entries: Vec<CacheEntry>,
    by_name: HashMap<String, Vec<usize>>,
}

impl LdCache {
    /// Read and parse a cache file.
    pub fn read(path: &Path) -> Result<LdCache> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        LdCache::parse(path, &bytes)
    }

    /// Parse cache bytes; `path` is only used in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<LdCache> {
        let bad = |reason: &str| Error::BadCache {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let mut entries = Vec::new();
        if bytes.starts_with(NEW_MAGIC) {
            parse_new(bytes, 0, &mut entries).ok_or_else(|| bad("truncated new-format cache"))?;
        } else if bytes.starts_with(OLD_MAGIC) {
            let nlibs = u32_at(bytes, 12).ok_or_else(|| bad("truncated header"))? as usize;
            let old_end = nlibs
                .checked_mul(12)
                .and_then(|n| n.checked_add(16))
                .ok_or_else(|| bad("bad entry count"))?;
            // A compat cache carries a new-format cache after the old entries, 8-aligned.
            let new_start = old_end.div_ceil(8) * 8;
            if bytes.len() > new_start && bytes[new_start..].starts_with(NEW_MAGIC) {
                parse_new(bytes, new_start, &mut entries)
                    .ok_or_else(|| bad("truncated new-format cache"))?;
            } else {
                for i in 0..nlibs {
                    let at = 16 + i * 12;
                    let flags = u32_at(bytes, at).ok_or_else(|| bad("truncated entry"))? as i32;
                    let key = u32_at(bytes, at + 4).ok_or_else(|| bad("truncated entry"))?;
                    let value = u32_at(bytes, at + 8).ok_or_else(|| bad("truncated entry"))?;
                    let name = cstr_at(bytes, old_end + key as usize);
                    let target = cstr_at(bytes, old_end + value as usize);
                    if let (Some(name), Some(target)) = (name, target) {
                        entries.push(CacheEntry {
                            name,
                            path: PathBuf::from(target),
                            flags,
                        });
                    }
                }
            }
        } else {
            return Err(bad("unknown magic"));
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_name.entry(e.name.clone()).or_default().push(i);
        }
        Ok(LdCache { entries, by_name })
    }

    /// Paths the cache gives for `name`, in cache order, with their flags.
    pub fn lookup(&self, name: &str) -> impl Iterator<Item = &CacheEntry> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|i| self.entries.get(*i))
    }

    /// Every entry.
    pub fn entries(&self) -> &[CacheEntry] {
        &self.entries
    }
}

fn parse_new(bytes: &[u8], base: usize, out: &mut Vec<CacheEntry>) -> Option<()> {
    let nlibs = u32_at(bytes, base + 20)? as usize;
    for i in 0..nlibs {
        let at = base + 48 + i * 24;
        let flags = u32_at(bytes, at)? as i32;
        let key = u32_at(bytes, at + 4)? as usize;
        let value = u32_at(bytes, at + 8)? as usize;
        // String offsets of the new format are relative to the new header.
        let name = cstr_at(bytes, base + key)?;
        let path = cstr_at(bytes, base + value)?;
        out.push(CacheEntry {
            name,
            path: PathBuf::from(path),
            flags,
        });
    }
    Some(())
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn cstr_at(bytes: &[u8], at: usize) -> Option<String> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machines_cache() {
        let path = Path::new("/etc/ld.so.cache");
        if !path.exists() {
            return;
        }
        let cache = LdCache::read(path).expect("parse cache");
        let libc: Vec<_> = cache.lookup("libc.so.6").collect();
        assert!(!libc.is_empty(), "libc.so.6 in the cache");
        assert!(libc.iter().any(|e| e.path.exists()));
    }

    #[test]
    fn reads_the_old_format() {
        let mut b = b"ld.so-1.7.0\0".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0x0303i32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&10u32.to_le_bytes());
        b.extend_from_slice(b"libz.so.1\0/lib/libz.so.1\0");
        let cache = LdCache::parse(Path::new("x"), &b).expect("old format");
        let e: Vec<_> = cache.lookup("libz.so.1").collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, PathBuf::from("/lib/libz.so.1"));
        assert_eq!(e[0].flags, 0x0303);
    }

    #[test]
    fn reads_the_new_format() {
        let mut b = NEW_MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes()); // nlibs
        b.extend_from_slice(&0u32.to_le_bytes()); // len_strings
        b.extend_from_slice(&[0u8; 4]); // flags + padding
        b.extend_from_slice(&[0u8; 16]); // extension offset + unused
        assert_eq!(b.len(), 48);
        let strings = 48 + 24;
        b.extend_from_slice(&0x0303i32.to_le_bytes());
        b.extend_from_slice(&(strings as u32).to_le_bytes());
        b.extend_from_slice(&(strings as u32 + 10).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(b"libz.so.1\0/usr/lib/libz.so.1\0");
        let cache = LdCache::parse(Path::new("x"), &b).expect("new format");
        assert_eq!(
            cache
                .lookup("libz.so.1")
                .map(|e| e.path.clone())
                .collect::<Vec<_>>(),
            vec![PathBuf::from("/usr/lib/libz.so.1")]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(LdCache::parse(Path::new("x"), b"not a cache").is_err());
        assert!(LdCache::parse(Path::new("x"), b"glibc-ld.so.cache1.1\xff\xff\xff\x7f").is_err());
    }
}
