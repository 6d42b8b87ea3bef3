//! What a real root filesystem offers: its glibc, the symbol versions its base libraries
//! define, and the sonames its loader can find. Used to check a bundle against a target image
//! (a debootstrap root, a mounted disk) instead of a manylinux policy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use goblin::elf::symver::VerdefSection;
use serde::Serialize;

use crate::loader::{Loader, Object};
use crate::{io_err, ElfFile, Error, Result, SymbolVersions, Version};

/// The versions a library defines (`.gnu.version_d`), highest per prefix: what it can
/// satisfy. libc.so.6 of glibc 2.31 defines GLIBC_2.31 and nothing later.
pub fn defined_versions(path: &Path) -> Result<SymbolVersions> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| Error::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = SymbolVersions::default();
    let Some(verdef) = elf.verdef.as_ref() else {
        return Ok(out);
    };
    add_verdef(verdef, &elf.dynstrtab, &mut out);
    Ok(out)
}

fn add_verdef(
    verdef: &VerdefSection<'_>,
    strtab: &goblin::strtab::Strtab<'_>,
    out: &mut SymbolVersions,
) {
    for def in verdef.iter() {
        for aux in def.iter() {
            if let Some(name) = strtab.get_at(aux.vda_name) {
                out.add(name);
            }
        }
    }
}

/// The release of a libc.so.6, from the banner it prints when run
/// ("GNU C Library (Debian GLIBC 2.31-13) stable release version 2.31.").
pub fn glibc_release(libc: &Path) -> Option<Version> {
    let bytes = std::fs::read(libc).ok()?;
    let needle = b"release version ";
    let at = bytes.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let tail = &bytes[at..bytes.len().min(at + 16)];
    let end = tail
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(tail.len());
    let text = std::str::from_utf8(&tail[..end])
        .ok()?
        .trim_end_matches('.');
    Version::parse(text)
}

/// A root filesystem seen as a target.
#[derive(Debug, Clone, Serialize)]
pub struct RootLibs {
    /// The root.
    pub root: PathBuf,
    /// Its glibc version (highest GLIBC_ version libc.so.6 defines).
    pub glibc: Option<Version>,
    /// Highest version per prefix that its libc, libstdc++ and libgcc_s define.
    pub versions: SymbolVersions,
    /// Every soname its loader finds without a search path (cache and default dirs).
    pub sonames: BTreeSet<String>,
}

impl RootLibs {
    /// Read a root filesystem (64-bit x86 libraries).
    pub fn read(root: &Path) -> Result<RootLibs> {
        let loader = Loader::for_root(root);
        let mut sonames = BTreeSet::new();
        if let Some(cache) = loader.cache() {
            for e in cache.entries() {
                if e.flags & crate::ldcache::FLAG_REQUIRED_MASK == crate::ldcache::FLAG_X8664_LIB64
                {
                    sonames.insert(e.name.clone());
                }
            }
        }
        for dir in [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
        ] {
            let Ok(rd) = std::fs::read_dir(loader.in_root(dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    sonames.insert(name);
                }
            }
        }
        // Resolve the base libraries as a 64-bit program of the root would.
        let probe = root_probe(&loader)?;
        let mut versions = SymbolVersions::default();
        let mut glibc = None;
        for lib in ["libc.so.6", "libstdc++.so.6", "libgcc_s.so.1"] {
            if let Some(found) = loader.resolve(lib, std::slice::from_ref(&probe)) {
                if let Ok(v) = defined_versions(&found.path) {
                    if lib == "libc.so.6" {
                        // A release without new symbols (2.31) defines only older versions:
                        // its banner is the better answer.
                        glibc = glibc_release(&found.path).or_else(|| v.max("GLIBC").cloned());
                    }
                    versions.merge(&v);
                }
            }
        }
        Ok(RootLibs {
            root: root.to_path_buf(),
            glibc,
            versions,
            sonames,
        })
    }
}

/// Some 64-bit ELF program of the root, to resolve libraries as it would.
fn root_probe(loader: &Loader) -> Result<Object> {
    for candidate in ["/bin/sh", "/usr/bin/env", "/bin/ls", "/usr/bin/dpkg"] {
        let path = loader.in_root(candidate);
        let real = std::fs::canonicalize(&path).unwrap_or(path.clone());
        // A symlink like /bin/sh -> dash is relative to the root, so resolve it inside.
        let real = if real.starts_with(loader.root()) {
            real
        } else {
            path.clone()
        };
        if let Ok(elf) = ElfFile::parse(&real) {
            return Ok(Object {
                path: real,
                elf: std::sync::Arc::new(elf),
            });
        }
        if let Ok(target) = std::fs::read_link(&path) {
            let inside = if target.is_absolute() {
                loader.in_root(&target.to_string_lossy())
            } else {
                path.parent().map(|p| p.join(&target)).unwrap_or(target)
            };
            if let Ok(elf) = ElfFile::parse(&inside) {
                return Ok(Object {
                    path: inside,
                    elf: std::sync::Arc::new(elf),
                });
            }
        }
    }
    Err(Error::Malformed {
        path: loader.root().to_path_buf(),
        reason: "no 64-bit ELF program found in /bin or /usr/bin: not a root filesystem".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_as_a_root() {
        let r = RootLibs::read(Path::new("/")).expect("read /");
        let glibc = r.glibc.expect("glibc version");
        assert!(glibc >= Version(vec![2, 17]), "{glibc}");
        assert!(r.sonames.contains("libc.so.6"));
        assert!(r.versions.max("GLIBC").is_some());
    }
}
