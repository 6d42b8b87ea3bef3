//! Reading the parts of an ELF file the dynamic loader uses.
//!
//! Only headers, the dynamic segment and `.gnu.version_r` are parsed (not symbol tables or
//! relocations): that is what keeps the closure of a large environment fast.

use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx};
use goblin::elf::dynamic::{Dynamic, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{Header, ET_DYN, ET_EXEC};
use goblin::elf::program_header::{ProgramHeader, PT_DYNAMIC, PT_INTERP};
use goblin::elf::section_header::SectionHeader;
use goblin::elf::symver::{VerdefSection, VerneedSection};
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
    /// `.gnu.version_d`: the symbol versions this library defines (`GLIBCXX_3.4.30`), what
    /// it can satisfy for the objects that need it.
    #[serde(default)]
    pub version_defs: Vec<String>,
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
    /// Read an ELF file from disk. Only the parts the loader uses are read (headers, the
    /// dynamic segment, the needed strings, `.gnu.version_r`): a few KiB whatever the size of
    /// the file, never the whole file (see `docs/elf.md`, "Memory").
    pub fn parse(path: &Path) -> Result<ElfFile> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        ElfFile::parse_file(path, &file)
    }

    /// Read an ELF file from an open file, with positioned reads of the parts the loader
    /// uses; `path` is only used in errors and in the result.
    pub fn parse_file(path: &Path, file: &std::fs::File) -> Result<ElfFile> {
        let len = file.metadata().map_err(io_err(path))?.len();
        let source = FileSource { file, len };
        parse_source(path, &source).map_err(|e| match e {
            Parse::Io(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            Parse::Bad(reason) => Error::Malformed {
                path: path.to_path_buf(),
                reason,
            },
        })
    }

    /// Read an ELF file already in memory; `path` is only used in errors and in the result.
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<ElfFile> {
        parse_source(path, &bytes).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: match e {
                Parse::Io(e) => e.to_string(),
                Parse::Bad(reason) => reason,
            },
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

/// Why a parse failed: the file could not be read, or its structures are broken.
enum Parse {
    Io(std::io::Error),
    Bad(String),
}

type Parsed<T> = std::result::Result<T, Parse>;

/// Largest dynamic segment or `.gnu.version_r` section read (real ones are a few KiB: 16 bytes
/// per tag, 16 per needed version).
const MAX_TABLE: u64 = 4 << 20;
/// Longest string read from the dynamic string table (a soname, a needed name, a search path).
const MAX_STRING: u64 = 64 << 10;

/// Where the bytes of an ELF file are: positioned reads, so that only the parts the loader
/// uses are ever in memory.
trait Source {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Fill `buf` from `offset`; fewer bytes only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl Source for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(<[u8]>::len(self));
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

struct FileSource<'a> {
    file: &'a std::fs::File,
    len: u64,
}

impl Source for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

/// Exactly `len` bytes at `offset`, or an error naming `what` when they are not in the file.
fn read_exact_at(src: &dyn Source, offset: u64, len: u64, what: &str) -> Parsed<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let end = offset.checked_add(len);
    if end.is_none_or(|end| end > src.len()) {
        return Err(Parse::Bad(format!(
            "{what} (offset {offset:#x}, size {len:#x}) is beyond the end of the file ({:#x})",
            src.len()
        )));
    }
    let mut buf = vec![0u8; len as usize];
    let n = src.read_at(offset, &mut buf).map_err(Parse::Io)?;
    if n as u64 != len {
        return Err(Parse::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{what}: the file became shorter while being read"),
        )));
    }
    Ok(buf)
}

/// At most `len` bytes at `offset` (fewer at the end of the file).
fn read_up_to_at(src: &dyn Source, offset: u64, len: u64) -> Parsed<Vec<u8>> {
    let len = len.min(src.len().saturating_sub(offset));
    let mut buf = vec![0u8; len as usize];
    let n = src.read_at(offset, &mut buf).map_err(Parse::Io)?;
    buf.truncate(n);
    Ok(buf)
}

/// The dynamic string table, read one string at a time: a large C++ library has megabytes
/// of symbol names there, of which the loader's questions need a handful.
struct DynStr<'a> {
    src: &'a dyn Source,
    offset: u64,
    size: u64,
}

impl DynStr<'_> {
    /// The NUL-terminated string at `at` within the table (`None` outside it, or not UTF-8).
    fn get(&self, at: u64) -> Option<String> {
        if at >= self.size {
            return None;
        }
        let mut out = Vec::new();
        let mut pos = self.offset + at;
        let end = self.offset + self.size;
        while pos < end && (out.len() as u64) < MAX_STRING {
            let chunk = read_up_to_at(self.src, pos, (end - pos).min(256)).ok()?;
            if chunk.is_empty() {
                break;
            }
            if let Some(nul) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return String::from_utf8(out).ok();
            }
            pos += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        String::from_utf8(out).ok()
    }
}

/// Read what the loader uses from `src`, one part after the other as each part says where
/// the next one is: the header, the program headers, the interpreter, the dynamic segment
/// (not for ELF objects ld.so does not load), and the symbol versions its string table names.
fn parse_source(path: &Path, src: &dyn Source) -> Parsed<ElfFile> {
    let (header, ctx) = read_header(src)?;
    let class = match ctx.container {
        Container::Little => ElfClass::Elf32,
        Container::Big => ElfClass::Elf64,
    };
    let kind = match header.e_type {
        ET_EXEC => ElfKind::Executable,
        ET_DYN => ElfKind::Shared,
        _ => ElfKind::Other,
    };
    let mut phdrs = read_program_headers(src, &header, ctx)?;
    let interpreter = read_interpreter(src, &phdrs)?;
    let dynamic = if kind == ElfKind::Other {
        DynamicEntries::default()
    } else {
        read_dynamic(src, &mut phdrs, ctx)?
    };

    let (version_needs, version_defs) = match dynamic.dynstr {
        Some(ref strtab) => read_versions(src, &header, ctx, strtab)?.unwrap_or_default(),
        None => (Vec::new(), Vec::new()),
    };

    Ok(ElfFile {
        path: path.to_path_buf(),
        class,
        machine: header.e_machine,
        kind,
        interpreter,
        soname: dynamic.soname,
        needed: dynamic.needed,
        rpath: dynamic.rpath,
        runpath: dynamic.runpath,
        has_runpath: dynamic.has_runpath,
        version_needs,
        version_defs,
        size: src.len(),
    })
}

/// The ELF header (64 bytes at most, 52 for ELFCLASS32) and the class and byte order every
/// later part is read with.
fn read_header(src: &dyn Source) -> Parsed<(Header, Ctx)> {
    let bad = |reason: String| Parse::Bad(reason);
    let head = read_up_to_at(src, 0, 64)?;
    if !is_elf_bytes(&head) {
        return Err(bad("no ELF magic".into()));
    }
    let header = goblin::elf::Elf::parse_header(&head).map_err(|e| bad(e.to_string()))?;
    let container = header.container().map_err(|e| bad(e.to_string()))?;
    let endian = header.endianness().map_err(|e| bad(e.to_string()))?;
    Ok((header, Ctx::new(container, endian)))
}

/// The program headers, read alone (their bytes are dropped once parsed).
fn read_program_headers(src: &dyn Source, header: &Header, ctx: Ctx) -> Parsed<Vec<ProgramHeader>> {
    let phnum = header.e_phnum as usize;
    let ph_bytes = read_exact_at(
        src,
        header.e_phoff,
        (phnum * ProgramHeader::size(ctx)) as u64,
        "program headers",
    )?;
    ProgramHeader::parse(&ph_bytes, 0, phnum, ctx)
        .map_err(|e| Parse::Bad(format!("program headers: {e}")))
}

/// `PT_INTERP`: the loader an executable asks for, up to its first NUL (the last such
/// segment wins).
fn read_interpreter(src: &dyn Source, phdrs: &[ProgramHeader]) -> Parsed<Option<String>> {
    let mut interpreter = None;
    for ph in phdrs {
        if ph.p_type == PT_INTERP && ph.p_filesz > 0 {
            let raw = read_up_to_at(src, ph.p_offset, ph.p_filesz.min(MAX_STRING))?;
            if !raw.is_empty() {
                let raw = raw.split(|b| *b == 0).next().unwrap_or(&raw);
                interpreter = Some(String::from_utf8_lossy(raw).into_owned());
            }
        }
    }
    Ok(interpreter)
}

/// What the dynamic segment names, and its string table (where the symbol versions' names
/// are too). All empty for a file without one.
#[derive(Default)]
struct DynamicEntries<'a> {
    soname: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    has_runpath: bool,
    dynstr: Option<DynStr<'a>>,
}

/// The entries of the first `PT_DYNAMIC` (the one goblin reads): its bytes are read alone, and
/// goblin is handed the program headers with that segment moved to offset 0 of them, which is
/// why `phdrs` is changed. The string table is checked to lie inside the file.
fn read_dynamic<'a>(
    src: &'a dyn Source,
    phdrs: &mut [ProgramHeader],
    ctx: Ctx,
) -> Parsed<DynamicEntries<'a>> {
    let bad = |reason: String| Parse::Bad(reason);
    let mut out = DynamicEntries::default();
    let Some(i) = phdrs.iter().position(|ph| ph.p_type == PT_DYNAMIC) else {
        return Ok(out);
    };
    let ph = &phdrs[i];
    if ph.p_filesz > MAX_TABLE {
        return Err(bad(format!(
            "dynamic: a dynamic segment of {} bytes",
            ph.p_filesz
        )));
    }
    let dyn_bytes = read_exact_at(src, ph.p_offset, ph.p_filesz, "dynamic: PT_DYNAMIC")?;
    // Entries are read relative to the segment's own bytes.
    phdrs[i].p_offset = 0;
    let dynamic =
        Dynamic::parse(&dyn_bytes, phdrs, ctx).map_err(|e| bad(format!("dynamic: {e}")))?;
    let Some(dynamic) = dynamic else {
        return Ok(out);
    };
    let info = &dynamic.info;
    let (offset, size) = (info.strtab as u64, info.strsz as u64);
    if offset.checked_add(size).is_none_or(|end| end > src.len()) {
        return Err(bad(format!(
            "dynamic string table: offset {offset:#x} and size {size:#x} are beyond the end of the file ({:#x})",
            src.len()
        )));
    }
    let strtab = DynStr { src, offset, size };
    for d in &dynamic.dyns {
        match d.d_tag {
            goblin::elf::dynamic::DT_NEEDED => {
                if let Some(s) = strtab.get(d.d_val) {
                    out.needed.push(s);
                }
            }
            goblin::elf::dynamic::DT_SONAME => out.soname = strtab.get(d.d_val),
            DT_RPATH => {
                if let Some(s) = strtab.get(d.d_val) {
                    out.rpath.extend(split_path(&s));
                }
            }
            DT_RUNPATH => {
                out.has_runpath = true;
                if let Some(s) = strtab.get(d.d_val) {
                    out.runpath.extend(split_path(&s));
                }
            }
            _ => {}
        }
    }
    out.dynstr = Some(strtab);
    Ok(out)
}

/// `.gnu.version_r` (what the file needs) and `.gnu.version_d` (what it defines). Section
/// headers are optional for the loader, so a stripped or odd file just has no versions
/// rather than failing (only a read error fails).
fn read_versions(
    src: &dyn Source,
    header: &Header,
    ctx: Ctx,
    dynstr: &DynStr<'_>,
) -> Parsed<Option<(Vec<VersionNeed>, Vec<String>)>> {
    if header.e_shoff == 0 || header.e_shnum == 0 {
        return Ok(None);
    }
    let shnum = header.e_shnum as usize;
    let Ok(sh_bytes) = read_exact_at(
        src,
        header.e_shoff,
        (shnum * SectionHeader::size(ctx)) as u64,
        "section headers",
    ) else {
        return Ok(None);
    };
    let Ok(shdrs) = SectionHeader::parse_from(&sh_bytes, 0, shnum, ctx) else {
        return Ok(None);
    };
    drop(sh_bytes);
    let section = |kind: u32, what: &str| -> Parsed<Option<(SectionHeader, Vec<u8>)>> {
        let Some(mut sh) = shdrs.iter().find(|s| s.sh_type == kind).cloned() else {
            return Ok(None);
        };
        if sh.sh_size > MAX_TABLE {
            return Ok(None);
        }
        let bytes = match read_exact_at(src, sh.sh_offset, sh.sh_size, what) {
            Ok(b) => b,
            Err(Parse::Io(e)) => return Err(Parse::Io(e)),
            Err(Parse::Bad(_)) => return Ok(None),
        };
        sh.sh_offset = 0;
        Ok(Some((sh, bytes)))
    };
    let mut needs = Vec::new();
    if let Some((sh, bytes)) = section(
        goblin::elf::section_header::SHT_GNU_VERNEED,
        ".gnu.version_r",
    )? {
        if let Ok(Some(table)) = VerneedSection::parse(&bytes, std::slice::from_ref(&sh), ctx) {
            for need in table.iter() {
                let file = dynstr
                    .get(need.vn_file as u64)
                    .unwrap_or_else(|| "?".to_owned());
                let versions = need
                    .iter()
                    .filter_map(|aux| dynstr.get(aux.vna_name as u64))
                    .collect();
                needs.push(VersionNeed { file, versions });
            }
        }
    }
    let mut defs = Vec::new();
    if let Some((sh, bytes)) = section(
        goblin::elf::section_header::SHT_GNU_VERDEF,
        ".gnu.version_d",
    )? {
        if let Ok(Some(table)) = VerdefSection::parse(&bytes, std::slice::from_ref(&sh), ctx) {
            for def in table.iter() {
                // The first aux entry names the version itself; later ones its parents.
                if let Some(aux) = def.iter().next() {
                    if let Some(name) = dynstr.get(aux.vda_name as u64) {
                        defs.push(name);
                    }
                }
            }
        }
    }
    Ok(Some((needs, defs)))
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

    /// A source that counts what is read from it.
    struct Counting<'a> {
        bytes: &'a [u8],
        read: std::cell::Cell<u64>,
    }

    impl Source for Counting<'_> {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.bytes.read_at(offset, buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn a_large_file_is_read_in_parts_with_the_same_result_as_goblin() {
        let exe = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(&exe).expect("read");
        assert!(bytes.len() > 1 << 20, "the test binary is small");
        let counting = Counting {
            bytes: &bytes,
            read: std::cell::Cell::new(0),
        };
        let ours = match parse_source(&exe, &counting) {
            Ok(elf) => elf,
            Err(_) => panic!("parse failed"),
        };
        assert!(
            counting.read.get() < 64 * 1024,
            "read {} bytes of {}",
            counting.read.get(),
            bytes.len()
        );
        let full = goblin::elf::Elf::parse(&bytes).expect("goblin");
        assert_eq!(ours.needed, full.libraries);
        assert_eq!(ours.soname.as_deref(), full.soname);
        assert_eq!(ours.rpath, full.rpaths);
        assert_eq!(ours.runpath, full.runpaths);
        assert_eq!(ours.interpreter.as_deref(), full.interpreter);
        let versions: Vec<(String, Vec<String>)> = full
            .verneed
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|need| {
                        let file = full
                            .dynstrtab
                            .get_at(need.vn_file)
                            .unwrap_or("?")
                            .to_owned();
                        let names = need
                            .iter()
                            .filter_map(|a| full.dynstrtab.get_at(a.vna_name).map(str::to_owned))
                            .collect();
                        (file, names)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let got: Vec<(String, Vec<String>)> = ours
            .version_needs
            .iter()
            .map(|n| (n.file.clone(), n.versions.clone()))
            .collect();
        assert_eq!(got, versions);
        assert!(!got.is_empty());
        // From disk, the same.
        let from_disk = ElfFile::parse(&exe).expect("parse");
        assert_eq!(from_disk.needed, ours.needed);
        assert_eq!(from_disk.version_needs, ours.version_needs);
        assert_eq!(from_disk.size, bytes.len() as u64);
    }

    #[test]
    fn truncated_files_fail_cleanly() {
        let exe = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(&exe).expect("read");
        // The whole file parses: the cuts below fail because they are cut, not because the
        // file is one the parser cannot read.
        ElfFile::parse_bytes(&exe, &bytes).expect("the whole test executable parses");
        for cut in [3, 20, 64, 100, 1000, 5000, 20000] {
            match ElfFile::parse_bytes(&exe, &bytes[..cut]) {
                Err(Error::Malformed { path, reason }) => {
                    assert_eq!(path, exe, "cut at {cut}");
                    assert!(!reason.is_empty(), "cut at {cut}: an empty reason");
                }
                Err(other) => panic!("cut at {cut}: not reported as malformed: {other}"),
                Ok(_) => panic!("cut at {cut} of {} bytes parsed as whole", bytes.len()),
            }
        }
    }

    #[test]
    fn text_is_not_elf() {
        assert!(!is_elf(Path::new("/etc/hostname")));
        assert!(!is_elf(Path::new("/nonexistent")));
        assert!(ElfFile::parse_bytes(Path::new("x"), b"#!/bin/sh\n").is_err());
    }
}
