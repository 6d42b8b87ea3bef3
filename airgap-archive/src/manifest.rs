//! The manifest: the first entry of every bundle, a versioned TOML file that lists every
//! file with its size, mode and sha256, where it came from, and what to do on the target.

use std::fs;
use std::io::Read;
use std::path::Path;

use airgap_plugin_api::{InstallStep, Package, PythonEnvironment, TargetProfile};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::tarfmt::TarReader;

/// Where the manifest sits inside the bundle's top folder. It is the first tar entry.
pub const MANIFEST_PATH: &str = ".airgap/manifest.toml";
/// Version of the manifest format this crate writes; readers refuse newer ones.
pub const FORMAT: u32 = 1;
/// Largest manifest written or read (hostile bundles may declare anything, and the manifest
/// is held in memory while it is parsed). A real environment's manifest takes about 240 bytes
/// a file (a conda environment of 1,272 files: 307 KB), up to about 900 with long paths and a
/// prefix rewrite each: 64 MiB holds 70,000 to 280,000 files, and keeps what a reader holds
/// for a tiny bundle under a few hundred MB.
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
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
fn parse_record(line: &str) -> Option<FileRecord> {
    let s = line.trim().strip_suffix(',')?.trim_end();
    let s = s.strip_prefix('{')?.strip_suffix('}')?;
    let b = s.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let mut r = FileRecord {
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
    };
    let (mut has_path, mut has_kind, mut has_mode, mut has_plugin) = (false, false, false, false);
    loop {
        skip(&mut i);
        if i >= b.len() {
            break;
        }
        let k0 = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let key = &s[k0..i];
        skip(&mut i);
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        skip(&mut i);
        enum V {
            S(String),
            N(u64),
        }
        let v = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut out = String::new();
            loop {
                let c = *b.get(i)?;
                match c {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        let e = *b.get(i + 1)?;
                        i += 2;
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
                                let hex = s.get(i..i + n)?;
                                let code = u32::from_str_radix(hex, 16).ok()?;
                                out.push(char::from_u32(code)?);
                                i += n;
                            }
                            _ => return None,
                        }
                    }
                    c if c < 0x20 || c == 0x7f => return None,
                    _ => {
                        // Copy one UTF-8 character.
                        let ch = s[i..].chars().next()?;
                        out.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            V::S(out)
        } else {
            let d0 = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == d0 || (b[d0] == b'0' && i - d0 > 1) {
                return None;
            }
            V::N(s[d0..i].parse().ok()?)
        };
        match (key, v) {
            ("path", V::S(v)) if !has_path => {
                r.path = v;
                has_path = true;
            }
            ("path_hex", V::S(v)) if r.path_hex.is_none() => r.path_hex = Some(v),
            ("kind", V::S(v)) if !has_kind => {
                r.kind = match v.as_str() {
                    "file" => FileType::File,
                    "dir" => FileType::Dir,
                    "symlink" => FileType::Symlink,
                    _ => return None,
                };
                has_kind = true;
            }
            ("size", V::N(v)) => r.size = v,
            ("mode", V::N(v)) if !has_mode => {
                r.mode = u32::try_from(v).ok()?;
                has_mode = true;
            }
            ("sha256", V::S(v)) if r.sha256.is_none() => r.sha256 = Some(v),
            ("plugin", V::S(v)) if !has_plugin => {
                r.plugin = v;
                has_plugin = true;
            }
            ("package", V::S(v)) if r.package.is_none() => r.package = Some(v),
            ("target", V::S(v)) if r.target.is_none() => r.target = Some(v),
            ("target_hex", V::S(v)) if r.target_hex.is_none() => r.target_hex = Some(v),
            _ => return None,
        }
        skip(&mut i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
    (has_path && has_kind && has_mode && has_plugin).then_some(r)
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
        if m.format == 0 || m.format > FORMAT {
            return Err(format!(
                "format {} is not supported (this airgap reads format {FORMAT}); use a newer airgap",
                m.format
            ));
        }
        if m.bundle_name.is_empty()
            || m.bundle_name.contains('/')
            || m.bundle_name == "."
            || m.bundle_name == ".."
        {
            return Err(format!("invalid bundle name {:?}", m.bundle_name));
        }
        for f in &m.files {
            names_agree(&f.path, &f.path_hex, "path")?;
            if let Some(t) = &f.target {
                names_agree(t, &f.target_hex, "target")?;
            }
        }
        Ok(m)
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

/// Read the manifest of a bundle archive (or of an unpacked bundle directory).
pub fn read_manifest(bundle: &Path) -> Result<Manifest, ArchiveError> {
    let manifest_err = |reason: String| ArchiveError::Manifest {
        bundle: bundle.into(),
        reason,
    };
    if bundle.is_dir() {
        let text = read_manifest_text_in(bundle)?;
        return Manifest::from_toml(&text).map_err(manifest_err);
    }
    let file = crate::read::open_bundle(bundle)?;
    read_manifest_opened(bundle, &file)
}

/// The manifest text of an extracted or unpacked bundle folder, refused over [`MAX_MANIFEST`]
/// before it is read.
pub(crate) fn read_manifest_text_in(tree: &Path) -> Result<String, ArchiveError> {
    let path = tree.join(MANIFEST_PATH);
    let file = fs::File::open(&path).map_err(|e| ArchiveError::io("reading", &path, e))?;
    let size = file
        .metadata()
        .map_err(|e| ArchiveError::io("reading", &path, e))?
        .len();
    if size > MAX_MANIFEST {
        return Err(ArchiveError::ManifestTooLarge {
            bundle: tree.into(),
            size,
            max: MAX_MANIFEST,
        });
    }
    let mut text = String::new();
    file.take(MAX_MANIFEST)
        .read_to_string(&mut text)
        .map_err(|e| ArchiveError::io("reading", &path, e))?;
    Ok(text)
}

/// [`read_manifest`] of a bundle file over a descriptor from [`crate::read::open_bundle`].
pub fn read_manifest_opened(bundle: &Path, file: &fs::File) -> Result<Manifest, ArchiveError> {
    let manifest_err = |reason: String| ArchiveError::Manifest {
        bundle: bundle.into(),
        reason,
    };
    let reader = crate::read::open_archive_file(bundle, file)?;
    let mut tar = TarReader::new(reader);
    let (top, text) = read_first_entry(bundle, &mut tar)?;
    let m = Manifest::from_toml(&text).map_err(manifest_err)?;
    if m.bundle_name.as_bytes() != top.as_slice() {
        return Err(ArchiveError::Corrupt {
            bundle: bundle.into(),
            reason: format!(
                "the manifest names the bundle {:?} but the top folder is {:?}",
                m.bundle_name,
                String::from_utf8_lossy(&top)
            ),
        });
    }
    Ok(m)
}

/// Read the first entry, which must be the manifest; returns the top folder and the text.
pub(crate) fn read_first_entry<R: Read>(
    bundle: &Path,
    tar: &mut TarReader<R>,
) -> Result<(Vec<u8>, String), ArchiveError> {
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
                && entry.kind == crate::tarfmt::EntryType::File =>
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
    let bytes = tar
        .read_all(MAX_MANIFEST)
        .map_err(|e| corrupt(format!("reading the manifest: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| corrupt("the manifest is not UTF-8".into()))?;
    Ok((top, text))
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
