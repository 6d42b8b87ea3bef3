//! Reading the parts of an ELF file the dynamic loader uses.
//!
//! Only headers, the dynamic segment and `.gnu.version_r` are parsed (not symbol tables or
//! relocations): that is what keeps the closure of a large environment fast.

use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx};
use goblin::elf::dynamic::{Dynamic, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{Header, ET_DYN, ET_EXEC};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::section_header::SectionHeader;
use goblin::elf::symver::VerneedSection;
use goblin::strtab::Strtab;
use serde::Serialize;

use crate::version::SymbolVersions;
use crate::{io_err, Error, Result};

/// 32- or 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElfClass {
    /// ELFCLASS32.
    Elf32,
    /// ELFCLASS64.
    Elf64,
}

/// What the file is to the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElfKind {
    /// A position-dependent executable.
    Executable,
    /// A shared object, or a position-independent executable.
    Shared,
    /// Relocatable objects, core files and the rest: not loaded by ld.so.
    Other,
}

/// The symbol versions required from one needed library (one `Elf_Verneed` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionNeed {
    /// The library the versions come from (`libc.so.6`).
    pub file: String,
    /// Version names (`GLIBC_2.34`).
    pub versions: Vec<String>,
}

/// What the loader reads from one ELF file.
#[derive(Debug, Clone, Serialize)]
pub struct ElfFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// 32- or 64-bit.
    pub class: ElfClass,
    /// `e_machine` (62 = x86_64).
    pub machine: u16,
    /// Executable, shared object, or other.
    pub kind: ElfKind,
    /// `PT_INTERP`: the loader an executable asks for.
    pub interpreter: Option<String>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` entries, split on `:`, tokens not expanded.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries, split on `:`, tokens not expanded.
    pub runpath: Vec<String>,
    /// True when the file has a `DT_RUNPATH` tag at all (even empty): that disables the
    /// RPATH chain for its own lookups.
    pub has_runpath: bool,
    /// `.gnu.version_r`: required symbol versions by library.
    pub version_needs: Vec<VersionNeed>,
    /// Size of the file in bytes.
    pub size: u64,
}

/// True when the file at `path` starts with the ELF magic (by content, not by name).
/// Unreadable files and directories are not ELF.
pub fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    match std::fs::File::open(path) {
        Ok(mut f) => f.read_exact(&mut magic).is_ok() && is_elf_bytes(&magic),
        Err(_) => false,
    }
}

/// True when `bytes` start with the ELF magic.
pub fn is_elf_bytes(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[..4] == *b"\x7fELF"
}

impl ElfFile {
    /// Read an ELF file from disk.
    pub fn parse(path: &Path) -> Result<ElfFile> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        ElfFile::parse_bytes(path, &bytes)
    }

    /// Read an ELF file already in memory; `path` is only used in errors and in the result.
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<ElfFile> {
        let bad = |reason: String| Error::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        if !is_elf_bytes(bytes) {
            return Err(bad("no ELF magic".into()));
        }
        let header = goblin::elf::Elf::parse_header(bytes).map_err(|e| bad(e.to_string()))?;
        let container = header.container().map_err(|e| bad(e.to_string()))?;
        let endian = header.endianness().map_err(|e| bad(e.to_string()))?;
        let ctx = Ctx::new(container, endian);
        let class = match container {
            Container::Little => ElfClass::Elf32,
            Container::Big => ElfClass::Elf64,
        };
        let kind = match header.e_type {
            ET_EXEC => ElfKind::Executable,
            ET_DYN => ElfKind::Shared,
            _ => ElfKind::Other,
        };
        let phdrs =
            ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)
                .map_err(|e| bad(format!("program headers: {e}")))?;

        let mut interpreter = None;
        for ph in &phdrs {
            if ph.p_type == PT_INTERP && ph.p_filesz > 0 {
                let start = ph.p_offset as usize;
                let end = start.saturating_add(ph.p_filesz as usize).min(bytes.len());
                if start < end {
                    let raw = &bytes[start..end];
                    let raw = raw.split(|b| *b == 0).next().unwrap_or(raw);
                    interpreter = Some(String::from_utf8_lossy(raw).into_owned());
                }
            }
        }

        let mut soname = None;
        let mut needed = Vec::new();
        let mut rpath = Vec::new();
        let mut runpath = Vec::new();
        let mut has_runpath = false;
        let mut dynstr = None;
        if kind != ElfKind::Other {
            if let Some(dynamic) =
                Dynamic::parse(bytes, &phdrs, ctx).map_err(|e| bad(format!("dynamic: {e}")))?
            {
                let info = &dynamic.info;
                let strtab = Strtab::parse(bytes, info.strtab, info.strsz, 0)
                    .map_err(|e| bad(format!("dynamic string table: {e}")))?;
                let get = |off: u64| strtab.get_at(off as usize).map(str::to_owned);
                for d in &dynamic.dyns {
                    match d.d_tag {
                        goblin::elf::dynamic::DT_NEEDED => {
                            if let Some(s) = get(d.d_val) {
                                needed.push(s);
                            }
                        }
                        goblin::elf::dynamic::DT_SONAME => soname = get(d.d_val),
                        DT_RPATH => {
                            if let Some(s) = get(d.d_val) {
                                rpath.extend(split_path(&s));
                            }
                        }
                        DT_RUNPATH => {
                            has_runpath = true;
                            if let Some(s) = get(d.d_val) {
                                runpath.extend(split_path(&s));
                            }
                        }
                        _ => {}
                    }
                }
                dynstr = Some(strtab);
            }
        }

        let version_needs = match dynstr {
            Some(ref strtab) => read_verneed(bytes, &header, ctx, strtab).unwrap_or_default(),
            None => Vec::new(),
        };

        Ok(ElfFile {
            path: path.to_path_buf(),
            class,
            machine: header.e_machine,
            kind,
            interpreter,
            soname,
            needed,
            rpath,
            runpath,
            has_runpath,
            version_needs,
            size: bytes.len() as u64,
        })
    }

    /// `DT_RPATH` entries.
    pub fn rpath(&self) -> &[String] {
        &self.rpath
    }

    /// `DT_RUNPATH` entries.
    pub fn runpath(&self) -> &[String] {
        &self.runpath
    }

    /// `DT_NEEDED` names.
    pub fn needed(&self) -> &[String] {
        &self.needed
    }

    /// `DT_SONAME`.
    pub fn soname(&self) -> Option<&str> {
        self.soname.as_deref()
    }

    /// The highest required version per prefix (GLIBC, GLIBCXX, CXXABI, GCC, ...).
    pub fn symbol_versions(&self) -> SymbolVersions {
        let mut v = SymbolVersions::default();
        for need in &self.version_needs {
            for name in &need.versions {
                v.add(name);
            }
        }
        v
    }

    /// True when the loader can load this file into a process like `other` (same class and
    /// machine); the loader skips wrong-class files while searching.
    pub fn compatible_with(&self, other: &ElfFile) -> bool {
        self.class == other.class && self.machine == other.machine
    }
}

/// Section headers are optional for the loader, so a stripped or odd file just has no
/// version needs rather than failing.
fn read_verneed(
    bytes: &[u8],
    header: &Header,
    ctx: Ctx,
    dynstr: &Strtab<'_>,
) -> Option<Vec<VersionNeed>> {
    if header.e_shoff == 0 || header.e_shnum == 0 {
        return None;
    }
    let shdrs =
        SectionHeader::parse(bytes, header.e_shoff as usize, header.e_shnum as usize, ctx).ok()?;
    let section = VerneedSection::parse(bytes, &shdrs, ctx).ok()??;
    let mut out = Vec::new();
    for need in section.iter() {
        let file = dynstr.get_at(need.vn_file).unwrap_or("?").to_owned();
        let versions = need
            .iter()
            .filter_map(|aux| dynstr.get_at(aux.vna_name).map(str::to_owned))
            .collect();
        out.push(VersionNeed { file, versions });
    }
    Some(out)
}

fn split_path(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(':').filter(|e| !e.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_test_binary() {
        let exe = std::env::current_exe().expect("current exe");
        assert!(is_elf(&exe));
        let elf = ElfFile::parse(&exe).expect("parse");
        assert!(elf.needed.iter().any(|n| n.starts_with("libc.so")));
        let v = elf.symbol_versions();
        assert!(v.max("GLIBC").is_some());
    }

    #[test]
    fn text_is_not_elf() {
        assert!(!is_elf(Path::new("/etc/hostname")));
        assert!(!is_elf(Path::new("/nonexistent")));
        assert!(ElfFile::parse_bytes(Path::new("x"), b"#!/bin/sh\n").is_err());
    }
}
