//! The manifest: the first entry of every bundle, a versioned TOML file that lists every
//! file with its size, mode and sha256, where it came from, and what to do on the target.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::format::model::{InstallStep, Package, PythonEnvironment, TargetProfile};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
pub mod records;

use crate::format::tarfmt::TarReader;
use records::{scratch_error, Builder, Records};

/// Where the manifest sits inside the bundle's top folder. It is the first tar entry.
pub const MANIFEST_PATH: &str = ".airgap/manifest.toml";
/// Version of the manifest format this crate writes; readers refuse newer ones.
pub const FORMAT: u32 = 1;
/// Largest manifest written or read (hostile bundles may declare anything: readers spill the
/// records to scratch files, and a manifest airgap did not write is parsed whole in memory).
/// A real environment's manifest takes about 240 bytes a file (a conda environment of 1,272
/// files: 307 KB), up to about 900 with long paths and a prefix rewrite each: 64 MiB holds
/// 70,000 to 280,000 files, and keeps what a tiny bundle can make a reader hold or write
/// under a few hundred MB.
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Longest path a bundle may hold.
pub const MAX_PATH: usize = 4096;
/// Deepest nesting a bundle may hold.
pub const MAX_DEPTH: usize = 256;
/// Largest file a bundle may hold (16 TiB, ext4's limit). Sparse holes are hashed
/// without being read, so this bounds the work a hostile declared size can cause.
pub const MAX_FILE_SIZE: u64 = 1 << 44;

/// Is `rel` (a path below the top folder) a plain relative path?
pub fn check_rel(rel: &[u8]) -> Result<(), String> {
    if rel.len() > MAX_PATH {
        return Err(format!("path longer than {MAX_PATH} bytes"));
    }
    if rel.starts_with(b"/") {
        return Err("absolute path".into());
    }
    let mut depth = 0;
    for c in rel.split(|&b| b == b'/') {
        match c {
            b"" => return Err("empty path component".into()),
            b"." => return Err("`.` component".into()),
            b".." => return Err("`..` component".into()),
            _ => depth += 1,
        }
    }
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(())
}

/// Does `target`, relative to the directory `dir` (a bundle path), stay inside the bundle?
pub(crate) fn link_stays_inside(dir: &[u8], target: &[u8]) -> bool {
    if target.starts_with(b"/") || target.is_empty() {
        return false;
    }
    let mut depth: Vec<&[u8]> = dir
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            c => depth.push(c),
        }
    }
    true
}

/// Where the carried unpacker lives in a bundle (below the top folder): `NAME/unpack` runs it.
pub const UNPACKER_PATH: &str = ".airgap/airgap-unpack";

/// The plugin name recorded for what airgap itself adds (the unpacker and its launcher).
pub const AIRGAP_PLUGIN: &str = "airgap";

/// What the host knows about the bundle besides its files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManifestInput {
    /// The top folder inside the archive.
    pub bundle_name: String,
    /// Version of airgap that wrote the bundle.
    pub airgap_version: String,
    /// The plugins that contributed.
    pub plugins: Vec<PluginRecord>,
    /// The machine the bundle is for.
    pub target: TargetProfile,
    /// The Python environment, if one was brought.
    pub python: Option<PythonEnvironment>,
    /// Every package.
    pub packages: Vec<PackageRecord>,
    /// What to do on the target, in order.
    pub install_steps: Vec<StepRecord>,
    /// Warnings of the bundling.
    pub warnings: Vec<String>,
}

/// One plugin that contributed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// ABI version the plugin was built against.
    pub abi: String,
    /// The `[sources.X]` key that selected it.
    pub source: String,
}

/// A package and the plugin that brought it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// The plugin.
    pub plugin: String,
    /// The package.
    pub package: Package,
}

/// An install step and the plugin that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The plugin.
    pub plugin: String,
    /// The step.
    pub step: InstallStep,
}

/// Kind of a file record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

/// One path of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the top folder (lossy when the name is not UTF-8; see `path_hex`).
    pub path: String,
    /// The exact bytes of the path, hex-encoded, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// What it is.
    pub kind: FileType,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// sha256 of the content (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Plugin that contributed it.
    pub plugin: String,
    /// Package it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The exact bytes of the link target, hex-encoded, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

impl FileRecord {
    /// The exact path bytes.
    pub fn path_bytes(&self) -> Vec<u8> {
        decode(&self.path, &self.path_hex)
    }

    /// The exact link target bytes.
    pub fn target_bytes(&self) -> Option<Vec<u8>> {
        self.target.as_ref().map(|t| decode(t, &self.target_hex))
    }
}

fn decode(text: &str, hex_form: &Option<String>) -> Vec<u8> {
    match hex_form.as_deref().and_then(|h| hex::decode(h).ok()) {
        Some(bytes) => bytes,
        None => text.as_bytes().to_vec(),
    }
}

/// A record's two names must say the same: `inspect` shows the text, unpack installs the
/// bytes. The writer sets the hex form only for bytes that are not UTF-8, and the text is
/// then their lossy form; anything else is refused.
fn names_agree(text: &str, hex_form: &Option<String>, field: &str) -> Result<(), String> {
    let Some(h) = hex_form else {
        return Ok(());
    };
    let disagree = |shown: String| {
        Err(format!(
            "the record {text:?} has {field}_hex {shown}: its two names disagree"
        ))
    };
    let Ok(bytes) = hex::decode(h) else {
        return disagree("that is not hex".into());
    };
    if encode(&bytes) != (text.to_string(), Some(h.to_ascii_lowercase())) {
        return disagree(format!("naming {:?}", String::from_utf8_lossy(&bytes)));
    }
    Ok(())
}

/// `(text, hex)` for a byte string: hex only when it is not UTF-8.
pub(crate) fn encode(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// The manifest of a bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The top folder inside the archive.
    pub bundle_name: String,
    /// Version of airgap that wrote it.
    pub airgap_version: String,
    /// The plugins that contributed.
    #[serde(default)]
    pub plugins: Vec<PluginRecord>,
    /// The machine the bundle is for.
    #[serde(default)]
    pub target: TargetProfile,
    /// The Python environment, if any.
    #[serde(default)]
    pub python: Option<PythonEnvironment>,
    /// Warnings of the bundling.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Every package.
    #[serde(default)]
    pub packages: Vec<PackageRecord>,
    /// Install steps, in order.
    #[serde(default)]
    pub install_steps: Vec<StepRecord>,
    /// Every path of the bundle except the manifest itself, sorted by path bytes.
    #[serde(default)]
    pub files: Vec<FileRecord>,
}

/// The first line of every manifest we write.
const HEADER: &str =
    "# airgap bundle manifest (docs/archive-format.md): every file, then the bundle's metadata\n";
/// The files block starts the document, one inline table a line, so that it can be read and
/// written line by line: a TOML parser holding 100,000 records at once costs hundreds of MB.
const FILES_START: &str = "files = [\n";
const FILES_END: &str = "]\n";

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    bundle_name: String,
    airgap_version: String,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    plugins: Vec<PluginRecord>,
    #[serde(default)]
    target: TargetProfile,
    #[serde(default)]
    python: Option<PythonEnvironment>,
    #[serde(default)]
    packages: Vec<PackageRecord>,
    #[serde(default)]
    install_steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileRecord>,
}

/// Append `s` as a TOML basic string.
pub(crate) fn toml_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append one file record as an inline-table line of the files block.
pub(crate) fn write_record(out: &mut String, r: &FileRecord) {
    use std::fmt::Write;
    out.push_str("  { path = ");
    toml_str(out, &r.path);
    if let Some(h) = &r.path_hex {
        out.push_str(", path_hex = ");
        toml_str(out, h);
    }
    out.push_str(match r.kind {
        FileType::File => ", kind = \"file\"",
        FileType::Dir => ", kind = \"dir\"",
        FileType::Symlink => ", kind = \"symlink\"",
    });
    if r.kind == FileType::File {
        let _ = write!(out, ", size = {}", r.size);
    }
    let _ = write!(out, ", mode = {}", r.mode);
    if let Some(h) = &r.sha256 {
        out.push_str(", sha256 = ");
        toml_str(out, h);
    }
    out.push_str(", plugin = ");
    toml_str(out, &r.plugin);
    if let Some(p) = &r.package {
        out.push_str(", package = ");
        toml_str(out, p);
    }
    if let Some(t) = &r.target {
        out.push_str(", target = ");
        toml_str(out, t);
    }
    if let Some(t) = &r.target_hex {
        out.push_str(", target_hex = ");
        toml_str(out, t);
    }
    out.push_str(" },\n");
}

/// Strict reader of the lines [`write_record`] writes; `None` for anything else (the caller
/// then parses the whole document with a full TOML parser).
pub(crate) fn parse_record(line: &str) -> Option<FileRecord> {
    let s = line.trim().strip_suffix(',')?.trim_end();
    let mut table = InlineTable {
        s: s.strip_prefix('{')?.strip_suffix('}')?,
        i: 0,
    };
    let mut r = Fields::new();
    loop {
        table.skip_blanks();
        if table.at_end() {
            break;
        }
        let key = table.key()?;
        let value = table.value()?;
        r.set(key, value)?;
        table.skip_blanks();
        match table.peek() {
            None => break,
            Some(b',') => table.i += 1,
            Some(_) => return None,
        }
    }
    r.finish()
}

/// The path bytes of a line as [`write_record`] writes it (its first field, and `path_hex`
/// when that follows), without the rest: what a binary search over the records compares.
/// `None` for any other line.
pub(crate) fn record_path_key(line: &str) -> Option<Vec<u8>> {
    let mut table = InlineTable {
        s: line.trim_start().strip_prefix('{')?,
        i: 0,
    };
    table.skip_blanks();
    let path = match (table.key()?, table.value()?) {
        ("path", Value::Str(p)) => p,
        _ => return None,
    };
    table.skip_blanks();
    let mut hex = None;
    if table.peek() == Some(b',') {
        table.i += 1;
        table.skip_blanks();
        if let ("path_hex", Value::Str(h)) = (table.key()?, table.value()?) {
            hex = Some(h);
        }
    }
    Some(decode(&path, &hex))
}

/// A value of a record line: a basic string or a decimal integer.
enum Value {
    Str(String),
    Num(u64),
}

/// A cursor over the inside of one inline table as [`write_record`] writes it.
struct InlineTable<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> InlineTable<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A bare key and the `=` after it.
    fn key(&mut self) -> Option<&'a str> {
        let k0 = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        let key = &self.s[k0..self.i];
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return None;
        }
        self.i += 1;
        self.skip_blanks();
        Some(key)
    }

    fn value(&mut self) -> Option<Value> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            self.basic_string().map(Value::Str)
        } else {
            self.integer().map(Value::Num)
        }
    }

    /// The rest of a basic string after its opening quote, escapes decoded; control
    /// characters unescaped are refused, as TOML refuses them.
    fn basic_string(&mut self) -> Option<String> {
        let bytes = self.s.as_bytes();
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control character at once:
            // each of those is ASCII, so the run ends on a character boundary.
            let run = self.i;
            while bytes
                .get(self.i)
                .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20 && c != 0x7f)
            {
                self.i += 1;
            }
            out.push_str(self.s.get(run..self.i)?);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => self.escape(&mut out)?,
                _ => return None,
            }
        }
    }

    /// One escape sequence, at its backslash.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let e = *self.s.as_bytes().get(self.i + 1)?;
        self.i += 2;
        match e {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'e' => out.push('\u{1b}'),
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let hex = self.s.get(self.i..self.i + n)?;
                let code = u32::from_str_radix(hex, 16).ok()?;
                out.push(char::from_u32(code)?);
                self.i += n;
            }
            _ => return None,
        }
        Some(())
    }

    /// A decimal integer without a sign or leading zeros.
    fn integer(&mut self) -> Option<u64> {
        let d0 = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.i == d0 || (self.s.as_bytes()[d0] == b'0' && self.i - d0 > 1) {
            return None;
        }
        self.s[d0..self.i].parse().ok()
    }
}

/// The fields of a record line as they are read, each at most once (`size` excepted, as
/// before), and which of the required ones were seen.
struct Fields {
    r: FileRecord,
    has_path: bool,
    has_kind: bool,
    has_mode: bool,
    has_plugin: bool,
}

impl Fields {
    fn new() -> Fields {
        Fields {
            r: FileRecord {
                path: String::new(),
                path_hex: None,
                kind: FileType::File,
                size: 0,
                mode: 0,
                sha256: None,
                plugin: String::new(),
                package: None,
                target: None,
                target_hex: None,
            },
            has_path: false,
            has_kind: false,
            has_mode: false,
            has_plugin: false,
        }
    }

    /// Take one `key = value`; `None` for an unknown key, a repeated one or a wrong type.
    fn set(&mut self, key: &str, v: Value) -> Option<()> {
        match (key, v) {
            ("path", Value::Str(v)) if !self.has_path => {
                self.r.path = v;
                self.has_path = true;
            }
            ("path_hex", Value::Str(v)) if self.r.path_hex.is_none() => self.r.path_hex = Some(v),
            ("kind", Value::Str(v)) if !self.has_kind => {
                self.r.kind = match v.as_str() {
                    "file" => FileType::File,
                    "dir" => FileType::Dir,
                    "symlink" => FileType::Symlink,
                    _ => return None,
                };
                self.has_kind = true;
            }
            ("size", Value::Num(v)) => self.r.size = v,
            ("mode", Value::Num(v)) if !self.has_mode => {
                self.r.mode = u32::try_from(v).ok()?;
                self.has_mode = true;
            }
            ("sha256", Value::Str(v)) if self.r.sha256.is_none() => self.r.sha256 = Some(v),
            ("plugin", Value::Str(v)) if !self.has_plugin => {
                self.r.plugin = v;
                self.has_plugin = true;
            }
            ("package", Value::Str(v)) if self.r.package.is_none() => self.r.package = Some(v),
            ("target", Value::Str(v)) if self.r.target.is_none() => self.r.target = Some(v),
            ("target_hex", Value::Str(v)) if self.r.target_hex.is_none() => {
                self.r.target_hex = Some(v)
            }
            _ => return None,
        }
        Some(())
    }

    /// The record, when every required field was there.
    fn finish(self) -> Option<FileRecord> {
        let complete = self.has_path && self.has_kind && self.has_mode && self.has_plugin;
        complete.then_some(self.r)
    }
}

/// Do these first bytes of a file start a manifest as airgap writes one?
pub fn looks_like_manifest(head: &[u8]) -> bool {
    head.starts_with(HEADER.as_bytes()) || head.starts_with(FILES_START.as_bytes())
}

/// The start of a manifest, before its file records (see [`write_record`]).
pub(crate) fn begin_files(out: &mut String) {
    out.push_str(HEADER);
    out.push_str(FILES_START);
}

/// The end of the file records, then the metadata TOML.
pub(crate) fn end_files(out: &mut String, meta: &str) {
    out.push_str(FILES_END);
    out.push_str(meta);
}

impl Manifest {
    /// Serialize to TOML: the files block first, one line a file, then the metadata.
    pub fn to_toml(&self) -> Result<String, String> {
        let mut out = String::with_capacity(200 * self.files.len() + 4096);
        out.push_str(HEADER);
        out.push_str(FILES_START);
        for f in &self.files {
            write_record(&mut out, f);
        }
        out.push_str(FILES_END);
        out.push_str(&self.meta_toml()?);
        Ok(out)
    }

    /// The TOML of everything but the files.
    pub(crate) fn meta_toml(&self) -> Result<String, String> {
        let meta = Meta {
            format: self.format,
            bundle_name: self.bundle_name.clone(),
            airgap_version: self.airgap_version.clone(),
            warnings: self.warnings.clone(),
            plugins: self.plugins.clone(),
            target: self.target.clone(),
            python: self.python.clone(),
            packages: self.packages.clone(),
            install_steps: self.install_steps.clone(),
            files: Vec::new(),
        };
        toml::to_string(&meta).map_err(|e| e.to_string())
    }

    /// Parse and check the format version.
    pub fn from_toml(text: &str) -> Result<Manifest, String> {
        let m = match Self::fast_parse(text) {
            Some(m) => m,
            None => {
                let meta: Meta = toml::from_str(text).map_err(|e| e.to_string())?;
                Manifest::from(meta)
            }
        };
        m.check_meta()?;
        for f in &m.files {
            names_agree(&f.path, &f.path_hex, "path")?;
            if let Some(t) = &f.target {
                names_agree(t, &f.target_hex, "target")?;
            }
        }
        Ok(m)
    }

    /// The format version and the bundle name, which every reader checks first.
    fn check_meta(&self) -> Result<(), String> {
        if self.format == 0 || self.format > FORMAT {
            return Err(format!(
                "format {} is not supported (this airgap reads format {FORMAT}); use a newer airgap",
                self.format
            ));
        }
        if self.bundle_name.is_empty()
            || self.bundle_name.contains('/')
            || self.bundle_name == "."
            || self.bundle_name == ".."
        {
            return Err(format!("invalid bundle name {:?}", self.bundle_name));
        }
        Ok(())
    }

    fn fast_parse(text: &str) -> Option<Manifest> {
        let rest = text.strip_prefix(HEADER).unwrap_or(text);
        let body = rest.strip_prefix(FILES_START)?;
        let end = body
            .find("\n]\n")
            .map(|n| n + 1)
            .or_else(|| body.starts_with(FILES_END).then_some(0))?;
        let mut files = Vec::new();
        for line in body[..end].lines() {
            files.push(parse_record(line)?);
        }
        let meta: Meta = toml::from_str(&body[end + FILES_END.len()..]).ok()?;
        if !meta.files.is_empty() {
            return None;
        }
        let mut m = Manifest::from(meta);
        m.files = files;
        Some(m)
    }

    /// Total size of the files (saturating: a hostile manifest may declare any sizes).
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }
}

impl From<Meta> for Manifest {
    fn from(m: Meta) -> Manifest {
        Manifest {
            format: m.format,
            bundle_name: m.bundle_name,
            airgap_version: m.airgap_version,
            plugins: m.plugins,
            target: m.target,
            python: m.python,
            warnings: m.warnings,
            packages: m.packages,
            install_steps: m.install_steps,
            files: m.files,
        }
    }
}

/// A manifest as a reader holds it: the metadata in memory, the file records on disk
/// ([`Records`], sorted by path bytes), and the exact text in an unnamed temporary file (for
/// the tree an unpack leaves), so that reading a bundle of a million files takes no more
/// memory than one of ten.
#[derive(Debug)]
pub struct StreamedManifest {
    /// Everything but the files: `meta.files` is always empty.
    pub meta: Manifest,
    /// The file records, in path order.
    pub files: Records,
    text: File,
    text_len: u64,
    /// The first record the checker refuses: `(path, reason)` for an unsafe path, a size
    /// over the limit or a path listed twice. `inspect` shows such a manifest; `verify` and
    /// `unpack` refuse it.
    pub(crate) refused: Option<(String, String)>,
}

impl StreamedManifest {
    /// Total size of the files (saturating).
    pub fn total_size(&self) -> u64 {
        self.files.total_size()
    }

    /// Write the manifest's exact text to `out`.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut from = records::At {
            file: &self.text,
            pos: 0,
            end: self.text_len,
        };
        let n = io::copy(&mut from, out)?;
        if n != self.text_len {
            return Err(crate::spill::corrupt());
        }
        Ok(())
    }

    /// The sha256 (hex) of the manifest's exact text: a version's identity, which a delta
    /// names as its base ([`crate::format::delta::DeltaMeta::base`]).
    pub fn sha256(&self) -> io::Result<String> {
        use sha2::{Digest, Sha256};
        struct Hashing(Sha256);
        impl Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(Sha256::new());
        self.write_text(&mut h)?;
        Ok(hex::encode(h.0.finalize()))
    }

    /// The whole manifest, its records in memory: for small manifests and tests.
    pub fn into_manifest(self) -> Result<Manifest, ArchiveError> {
        let mut m = self.meta;
        m.files = self.files.iter().collect::<Result<Vec<_>, _>>()?;
        Ok(m)
    }
}

/// What the checker refuses in a record, first come: names that disagree (a manifest
/// error, as the full parser says), then unsafe paths and sizes over the limit.
#[derive(Default)]
struct Refusals {
    names: Option<String>,
    refused: Option<(String, String)>,
}

impl Refusals {
    fn note(&mut self, r: &FileRecord) {
        if self.names.is_none() {
            let agree = names_agree(&r.path, &r.path_hex, "path").and_then(|()| match &r.target {
                Some(t) => names_agree(t, &r.target_hex, "target"),
                None => Ok(()),
            });
            self.names = agree.err();
        }
        if self.refused.is_none() {
            if let Err(reason) = check_rel(&r.path_bytes()) {
                self.refused = Some((
                    r.path.clone(),
                    format!("the manifest lists an unsafe path ({reason})"),
                ));
            } else if r.size > MAX_FILE_SIZE {
                self.refused = Some((
                    r.path.clone(),
                    format!(
                        "the manifest declares {} bytes, over the {} bytes allowed",
                        r.size, MAX_FILE_SIZE
                    ),
                ));
            }
        }
    }
}

/// Parse the manifest text in `text` (`len` bytes) line by line: the files block goes to
/// [`Records`], only the metadata is held. A manifest airgap did not write (records not one a
/// line, the files elsewhere) is read whole by the full TOML parser instead, as before.
fn parse_streamed(bundle: &Path, text: File, len: u64) -> Result<StreamedManifest, ArchiveError> {
    let manifest_err = |reason: String| ArchiveError::Manifest {
        bundle: bundle.into(),
        reason,
    };
    let not_utf8 = || ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason: "the manifest is not UTF-8".into(),
    };
    let read_err = |e: io::Error| match e.kind() {
        io::ErrorKind::InvalidData => not_utf8(),
        _ => scratch_error(e),
    };
    let at = |pos: u64| records::At {
        file: &text,
        pos,
        end: len,
    };
    let fast = (|| -> Result<Option<(Manifest, Builder, Refusals)>, ArchiveError> {
        let mut reader = BufReader::with_capacity(64 * 1024, at(0));
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(scratch_error)?;
        if line == HEADER.as_bytes() {
            line.clear();
            reader.read_until(b'\n', &mut line).map_err(scratch_error)?;
        }
        if line != FILES_START.as_bytes() {
            return Ok(None);
        }
        let mut builder = Builder::new().map_err(scratch_error)?;
        let mut refusals = Refusals::default();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(scratch_error)? == 0 {
                return Ok(None);
            }
            if line == FILES_END.as_bytes() {
                break;
            }
            let s = std::str::from_utf8(&line).map_err(|_| not_utf8())?;
            let Some(r) = parse_record(s) else {
                return Ok(None);
            };
            refusals.note(&r);
            builder.push(&r).map_err(scratch_error)?;
        }
        let mut rest = String::new();
        reader.read_to_string(&mut rest).map_err(read_err)?;
        let meta: Meta = match toml::from_str(&rest) {
            Ok(m) => m,
            Err(_) => return Ok(None),
        };
        if !meta.files.is_empty() {
            return Ok(None);
        }
        Ok(Some((Manifest::from(meta), builder, refusals)))
    })()?;
    let (meta, builder, mut refusals) = match fast {
        Some((meta, builder, refusals)) => {
            meta.check_meta().map_err(manifest_err)?;
            if let Some(reason) = &refusals.names {
                return Err(manifest_err(reason.clone()));
            }
            (meta, builder, refusals)
        }
        None => {
            let mut whole = String::new();
            at(0).read_to_string(&mut whole).map_err(read_err)?;
            let mut m = Manifest::from_toml(&whole).map_err(manifest_err)?;
            drop(whole);
            let mut builder = Builder::new().map_err(scratch_error)?;
            let mut refusals = Refusals::default();
            for r in std::mem::take(&mut m.files) {
                refusals.note(&r);
                builder.push(&r).map_err(scratch_error)?;
            }
            (m, builder, refusals)
        }
    };
    let (files, twice) = builder.finish().map_err(scratch_error)?;
    if refusals.refused.is_none() {
        refusals.refused = twice.map(|p| (p, "the manifest lists this path twice".to_string()));
    }
    Ok(StreamedManifest {
        meta,
        files,
        text,
        text_len: len,
        refused: refusals.refused,
    })
}

/// Copy `len` bytes of manifest text from `input` into an unnamed temporary file and parse
/// it there; errors reading `input` are `reading`'s.
pub(crate) fn stream_from(
    bundle: &Path,
    input: &mut dyn Read,
    reading: &dyn Fn(io::Error) -> ArchiveError,
) -> Result<StreamedManifest, ArchiveError> {
    let mut out = tempfile::tempfile().map_err(scratch_error)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(reading(e)),
        };
        out.write_all(&buf[..n]).map_err(scratch_error)?;
        len += n as u64;
        if len > MAX_MANIFEST {
            return Err(ArchiveError::ManifestTooLarge {
                bundle: bundle.into(),
                size: len,
                max: MAX_MANIFEST,
            });
        }
    }
    parse_streamed(bundle, out, len)
}

/// The manifest must name the top folder it sits in.
pub(crate) fn check_top(bundle: &Path, meta: &Manifest, top: &[u8]) -> Result<(), ArchiveError> {
    if meta.bundle_name.as_bytes() != top {
        return Err(ArchiveError::Corrupt {
            bundle: bundle.into(),
            reason: format!(
                "the manifest names the bundle {:?} but the top folder is {:?}",
                meta.bundle_name,
                String::from_utf8_lossy(top)
            ),
        });
    }
    Ok(())
}

/// Read the first entry, which must be the manifest; returns the top folder and the
/// manifest, streamed.
pub(crate) fn read_first_entry<R: Read>(
    bundle: &Path,
    tar: &mut TarReader<R>,
) -> Result<(Vec<u8>, StreamedManifest), ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason,
    };
    let entry = tar
        .next_entry()
        .map_err(|e| corrupt(format!("not a readable airgap bundle: {e}")))?
        .ok_or_else(|| corrupt("the archive is empty".into()))?;
    let suffix = format!("/{MANIFEST_PATH}");
    let top = match entry.path.strip_suffix(suffix.as_bytes()) {
        Some(top)
            if !top.is_empty()
                && !top.contains(&b'/')
                && entry.kind == crate::format::tarfmt::EntryType::File =>
        {
            top.to_vec()
        }
        _ => {
            return Err(corrupt(format!(
                "the first entry is {:?}, not the manifest (not an airgap bundle?)",
                String::from_utf8_lossy(&entry.path)
            )))
        }
    };
    if entry.size > MAX_MANIFEST {
        return Err(ArchiveError::ManifestTooLarge {
            bundle: bundle.into(),
            size: entry.size,
            max: MAX_MANIFEST,
        });
    }
    let mut data = EntryData(tar);
    let m = stream_from(bundle, &mut data, &|e| {
        corrupt(format!("reading the manifest: {e}"))
    })?;
    Ok((top, m))
}

/// The data of a tar reader's current entry as an `io::Read`.
pub(crate) struct EntryData<'a, R>(pub(crate) &'a mut TarReader<R>);

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_data(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(path: &str) -> FileRecord {
        FileRecord {
            path: path.into(),
            path_hex: None,
            kind: FileType::File,
            size: 12,
            mode: 0o644,
            sha256: Some("ab".repeat(32)),
            plugin: "conda".into(),
            package: Some("conda:x-1".into()),
            target: None,
            target_hex: None,
        }
    }

    #[test]
    fn fast_and_full_parsers_agree() {
        let mut odd = record("we\"ird\\ na\tme \u{1} é");
        odd.kind = FileType::Symlink;
        odd.size = 0;
        odd.sha256 = None;
        odd.target = Some("t".into());
        let m = Manifest {
            format: FORMAT,
            bundle_name: "b".into(),
            airgap_version: "1".into(),
            warnings: vec!["w".into()],
            files: vec![record("a/b"), odd],
            ..Manifest::default()
        };
        let text = m.to_toml().unwrap();
        let fast = Manifest::fast_parse(&text).expect("fast path");
        let full: Meta = toml::from_str(&text).unwrap();
        assert_eq!(fast.files, full.files);
        assert_eq!(fast.files, m.files);
        assert_eq!(fast.warnings, vec!["w".to_string()]);
    }

    #[test]
    fn a_lines_path_key_is_its_records_path_bytes() {
        let mut hex = record("caf\u{fffd}");
        hex.path_hex = Some(hex::encode(b"caf\xe9"));
        for r in [
            record("a/b"),
            record("we\"ird\\ na\tme \u{1} é\u{7f}"),
            record(""),
            hex,
        ] {
            let mut line = String::new();
            write_record(&mut line, &r);
            assert_eq!(record_path_key(&line), Some(r.path_bytes()), "{line}");
            assert_eq!(parse_record(&line).as_ref(), Some(&r));
        }
        assert_eq!(record_path_key("  { kind = \"file\" },"), None);
        assert_eq!(record_path_key("  { path = \"unterminated },"), None);
    }

    #[test]
    fn unexpected_lines_fall_back_to_the_full_parser() {
        assert!(parse_record(
            "  { path = \"a\", kind = \"file\", mode = 1, plugin = \"p\", extra = 1 },"
        )
        .is_none());
        assert!(
            parse_record("  { path = 'a', kind = \"file\", mode = 1, plugin = \"p\" },").is_none()
        );
        assert!(
            parse_record("  { path = \"a\", kind = \"file\", mode = 1, plugin = \"p\" },")
                .is_some()
        );
    }
}
