//! The request a plugin receives and the contribution it returns. Both cross the ABI as JSON.
//!
//! Compatibility rule: within an ABI major, fields are only added, always with
//! `#[serde(default)]`, so an older plugin ignores what it does not know and a newer plugin
//! reading an older host's request gets defaults. The same rule for source code: the types
//! are `#[non_exhaustive]`, so a plugin builds them with `Default` or a constructor and never
//! with a literal that a new field would break (see the crate documentation).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the host asks a plugin for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ContributeRequest {
    /// The key of the source table that selected this plugin (`[sources.NAME]`).
    pub source: String,
    /// That table, converted from TOML. Relative paths in it are relative to `config_dir`.
    pub config: serde_json::Value,
    /// Directory of the configuration file (the working directory when there is none).
    pub config_dir: PathBuf,
    /// Name of the bundle: the top folder inside the archive.
    pub bundle_name: String,
    /// The machine the bundle is for.
    pub target: TargetProfile,
    /// A scratch directory for this plugin alone (downloaded wheels, patched copies). The host
    /// creates it, keeps it until the archive is written, then removes it. Entries may point
    /// into it.
    pub work_dir: PathBuf,
    /// Everything earlier plugins contributed, with directories already walked: one record
    /// per file, link or directory that will be in the bundle. Filled for plugins of
    /// [`crate::Stage::Finish`], the ones that inspect what the others brought; empty for the
    /// others (a large environment has hundreds of thousands of paths).
    pub earlier: Vec<BundleFile>,
    /// The Python environment an earlier plugin brought, if any.
    pub python: Option<PythonEnvironment>,
    /// Named facts earlier plugins published (`Contribution::facts`), by plugin name.
    pub facts: BTreeMap<String, serde_json::Value>,
    /// The user asked for more detail (`-v`).
    pub verbose: bool,
}

/// The air-gapped machine, as declared in `[target]` and completed by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TargetProfile {
    /// Full Python version on the target (`3.11.7`); micro matters for `Requires-Python`.
    pub python: Option<String>,
    /// Python implementation tag (`cp`).
    pub implementation: Option<String>,
    /// Python ABI tag (`cp311`).
    pub abi: Option<String>,
    /// Platform tags, most specific first (`manylinux2014_x86_64`, `linux_x86_64`).
    pub platforms: Vec<String>,
    /// The target's glibc version (`2.17`).
    pub glibc: Option<String>,
    /// Where the bundle will be unpacked, when known at bundle time (`--dest-prefix`).
    pub prefix: Option<String>,
    /// Machine architecture (`x86_64`).
    pub arch: Option<String>,
    /// What a probe of the target found (`airgap probe` there, or the code it printed),
    /// when the user gave one (`--target`, `[target] profile`): then the target's own
    /// libraries replace a manylinux policy's assumptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<TargetSystem>,
}

/// The target's system libraries, as a probe found them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TargetSystem {
    /// What told us: `probe` (every library the target's loader finds) or `code` (a
    /// retyped code: only the libraries of its catalog; any other counts as absent).
    pub source: String,
    /// Every soname the target's loader finds, with the symbol versions the library
    /// defines (empty when the profile does not carry them).
    pub libraries: BTreeMap<String, Vec<String>>,
    /// Highest symbol version per prefix of the target's libc, libstdc++ and libgcc_s
    /// (`GLIBCXX` -> `3.4.30`).
    pub versions: BTreeMap<String, String>,
    /// The NVIDIA driver version, when the target has one (`535.104.05`).
    pub nvidia_driver: Option<String>,
}

/// One path that will be in the bundle, as later plugins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BundleFile {
    /// Path inside the bundle, relative to its top folder, `/`-separated.
    pub path: String,
    /// Where the content comes from on the build machine (for links and directories: absent).
    pub source: Option<PathBuf>,
    /// What it is.
    pub kind: FileKind,
    /// Unix permission bits.
    pub mode: u32,
    /// Size in bytes (files only).
    pub size: u64,
    /// Name of the plugin that contributed it.
    pub plugin: String,
    /// The package it belongs to (a [`Package::id`]), if known.
    pub package: Option<String>,
}

impl BundleFile {
    /// A path `plugin` brings, with no source, size or package (a link or a directory; a
    /// regular file adds [`BundleFile::with_source`]).
    pub fn new(
        path: impl Into<String>,
        kind: FileKind,
        mode: u32,
        plugin: impl Into<String>,
    ) -> BundleFile {
        BundleFile {
            path: path.into(),
            source: None,
            kind,
            mode,
            size: 0,
            plugin: plugin.into(),
            package: None,
        }
    }

    /// Where a regular file's content comes from on the build machine, and its size.
    pub fn with_source(mut self, source: impl Into<PathBuf>, size: u64) -> BundleFile {
        self.source = Some(source.into());
        self.size = size;
        self
    }

    /// Attach the package id.
    pub fn with_package(mut self, package: impl Into<String>) -> BundleFile {
        self.package = Some(package.into());
        self
    }
}

/// Kind of a [`BundleFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link kept as a link, with its (relative) target.
    Symlink {
        /// The link target, relative to the link's directory.
        target: String,
    },
}

/// What a plugin brings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Contribution {
    /// Paths to put into the bundle. The host reads, dereferences, deduplicates and hashes
    /// them: plugins name files, they never send contents.
    pub entries: Vec<Entry>,
    /// Packages brought, for the manifest and the provenance report.
    pub packages: Vec<Package>,
    /// Steps the host runs on the target after unpacking, in order.
    pub install_steps: Vec<InstallStep>,
    /// Things the user should read in the summary.
    pub warnings: Vec<String>,
    /// The Python environment this plugin brings (environment-stage plugins).
    pub python: Option<PythonEnvironment>,
    /// Free-form facts for later plugins (`request.facts[plugin name]`).
    pub facts: BTreeMap<String, serde_json::Value>,
}

/// One thing to put into the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Entry {
    /// Path inside the bundle, relative to its top folder, `/`-separated, no `..`.
    pub dest: String,
    /// What to put there.
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Permission bits to store instead of the source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The package this belongs to (a [`Package::id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// This entry knowingly replaces what an earlier plugin put at `dest` (a patched copy of
    /// a file). Without it, two different contents at one path are an error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replace: bool,
}

/// Entries leave out the fields at their defaults: every reader since ABI 1.0 takes them as
/// defaults, and a contribution of 100,000 entries is megabytes smaller.
fn is_false(b: &bool) -> bool {
    !*b
}

impl Entry {
    /// An entry of `kind` at `dest`, with the source's permission bits, no package, and
    /// replacing nothing ([`Entry::path`], [`Entry::symlink`] and [`Entry::dir`] are the
    /// short forms).
    pub fn new(dest: impl Into<String>, kind: EntryKind) -> Entry {
        Entry {
            dest: dest.into(),
            kind,
            mode: None,
            package: None,
            replace: false,
        }
    }

    /// A file or directory tree copied from `source` to `dest`.
    pub fn path(source: impl Into<PathBuf>, dest: impl Into<String>) -> Entry {
        let kind = EntryKind::Path {
            source: source.into(),
            exclude: Vec::new(),
        };
        Entry::new(dest, kind)
    }

    /// A symbolic link at `dest` pointing to `target` (relative to the link's directory).
    pub fn symlink(dest: impl Into<String>, target: impl Into<String>) -> Entry {
        let kind = EntryKind::Symlink {
            target: target.into(),
        };
        Entry::new(dest, kind)
    }

    /// An empty directory at `dest`.
    pub fn dir(dest: impl Into<String>) -> Entry {
        Entry::new(dest, EntryKind::Dir)
    }

    /// Attach the package id.
    pub fn with_package(mut self, package: impl Into<String>) -> Entry {
        self.package = Some(package.into());
        self
    }

    /// Store these permission bits.
    pub fn with_mode(mut self, mode: u32) -> Entry {
        self.mode = Some(mode);
        self
    }

    /// Mark as a deliberate replacement of an earlier plugin's entry.
    pub fn replacing(mut self) -> Entry {
        self.replace = true;
        self
    }
}

/// What an [`Entry`] puts into the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum EntryKind {
    /// A file, or a directory walked recursively, from the build machine. Symlinks under it are
    /// kept when they stay inside the bundle and dereferenced when they leave it.
    Path {
        /// Absolute path on the build machine.
        source: PathBuf,
        /// Patterns (relative to `source`) to leave out when walking a directory, in airgap's
        /// one dialect (`airgap-glob`: a name at any depth, a path with `/` from `source`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
    },
    /// A symbolic link, stored as a link.
    Symlink {
        /// Link target, relative to the link's directory; must stay inside the bundle.
        target: String,
    },
    /// An empty directory.
    Dir,
}

/// A package a plugin brings, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Package {
    /// Unique id within the bundle, referenced by entries (`conda:numpy-1.26.4-py311h...`).
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Kind of package: `conda`, `wheel`, `system`, `python`, or the plugin's own.
    pub kind: String,
    /// Where it came from: channel, index URL, library path.
    pub origin: String,
    /// sha256 of the package artifact, when there is one (a wheel, a .conda file).
    pub sha256: Option<String>,
    /// Licence, when known: as the package's metadata declares it (an SPDX expression where
    /// it gives one), never guessed.
    pub license: Option<String>,
    /// Package URL (`pkg:pypi/numpy@2.1.0`, `pkg:conda/...`, `pkg:deb/debian/...`), when the
    /// source knows one: the SBOM's identity of the package. Since ABI 1.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

impl Package {
    /// A package with its id (unique within the bundle), name, version and kind; no origin,
    /// checksum or licence until the `with_*` methods add them.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
    ) -> Package {
        Package {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            kind: kind.into(),
            ..Package::default()
        }
    }

    /// Where it came from: channel, index URL, library path.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Package {
        self.origin = origin.into();
        self
    }

    /// The sha256 of the package artifact.
    pub fn with_sha256(mut self, sha256: impl Into<String>) -> Package {
        self.sha256 = Some(sha256.into());
        self
    }

    /// The licence.
    pub fn with_license(mut self, license: impl Into<String>) -> Package {
        self.license = Some(license.into());
        self
    }

    /// The package URL (ABI 1.2).
    pub fn with_purl(mut self, purl: impl Into<String>) -> Package {
        self.purl = Some(purl.into());
        self
    }
}

/// A Python environment brought into the bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PythonEnvironment {
    /// The environment's directory inside the bundle (`env`).
    pub prefix: String,
    /// The interpreter inside the bundle (`env/bin/python3`).
    pub executable: String,
    /// The environment's prefix on the build machine.
    pub source_prefix: PathBuf,
    /// An interpreter on the build machine that behaves as the bundled one (to ask for tags).
    pub source_executable: PathBuf,
    /// Full version (`3.11.7`).
    pub version: String,
    /// Implementation tag (`cp`).
    pub implementation: String,
    /// ABI tag (`cp311`).
    pub abi: String,
    /// Platform tags the interpreter accepts, most specific first.
    pub platforms: Vec<String>,
    /// site-packages inside the bundle (`env/lib/python3.11/site-packages`).
    pub site_packages: String,
}

/// A step the host runs on the target after unpacking. Steps are data, not code: the
/// air-gapped side never needs a plugin installed.
///
/// In every string of a step, `{dest}` stands for the absolute path the bundle was unpacked
/// to (the bundle's top folder), and `{python}` for the target's own interpreter given with
/// `airgap unpack --python PATH` (a step that uses `{python}` fails with a clear message when
/// none was given: that is how a wheelhouse-only bundle asks for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
#[non_exhaustive]
pub enum InstallStep {
    /// Replace the build machine's prefix by where `root` ended up, in the listed files. Text
    /// files: every occurrence. Binary files: C strings starting with the prefix, rewritten in
    /// place and padded with NUL bytes so that the size never changes. The host remembers the
    /// new prefix, so that `airgap relocate` can move the tree again later.
    RewritePrefix {
        /// The prefix as written in the files on the build machine (or a placeholder).
        old_prefix: String,
        /// The directory inside the bundle that `old_prefix` stands for (`env`).
        root: String,
        /// Files inside the bundle to rewrite.
        files: Vec<PrefixFile>,
    },
    /// Run a program. `program` is a path inside the bundle, or a bare name looked up on the
    /// target's `PATH`. A non-zero exit fails the installation, and nothing is left behind.
    Run {
        /// What this step does, for the user.
        description: String,
        /// The program.
        program: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment variables.
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
}

/// A file that holds a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PrefixFile {
    /// Path inside the bundle.
    pub path: String,
    /// How to rewrite it.
    pub mode: PrefixMode,
    /// Binary files: the longest prefix, in bytes, that the file's prefix slots have room for,
    /// when the plugin knows it. A conda package pads its placeholder (conda-build: 255 bytes)
    /// and the installer pads the prefix it writes with NUL bytes up to the placeholder's
    /// length, so the slot holds the placeholder's length, not the current prefix's. Unset
    /// (ABI 1.0 plugins, binaries without padding), a binary file takes a prefix no longer
    /// than `old_prefix`. Never less than `old_prefix`'s length. The rewrite itself still
    /// refuses a string whose NUL bytes do not suffice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
}

impl PrefixFile {
    /// A file rewritten in `mode`, with no recorded capacity.
    pub fn new(path: impl Into<String>, mode: PrefixMode) -> PrefixFile {
        PrefixFile {
            path: path.into(),
            mode,
            capacity: None,
        }
    }

    /// Record the capacity of the file's prefix slots (binary files).
    pub fn with_capacity(mut self, capacity: usize) -> PrefixFile {
        self.capacity = Some(capacity);
        self
    }
}

/// How to rewrite a prefix in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixMode {
    /// Every occurrence; the file may change size.
    Text,
    /// C strings, NUL-padded in place; the file never changes size.
    Binary,
}

/// Why a plugin could not contribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PluginError {
    /// What went wrong, lower case, naming the file or setting at fault.
    pub message: String,
    /// What the user can do about it (shown as a `help:` line).
    pub help: Option<String>,
    /// The plugin stopped because the host asked it to.
    pub cancelled: bool,
}

impl PluginError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> PluginError {
        PluginError {
            message: message.into(),
            help: None,
            cancelled: false,
        }
    }

    /// Add a `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> PluginError {
        self.help = Some(help.into());
        self
    }

    /// The error to return when [`crate::Host::is_cancelled`] turned true.
    pub fn cancelled() -> PluginError {
        PluginError {
            message: "cancelled".into(),
            help: None,
            cancelled: true,
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl ContributeRequest {
    /// Read this plugin's configuration table into a typed struct.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        let value = if self.config.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            self.config.clone()
        };
        serde_json::from_value(value).map_err(|e| {
            PluginError::new(format!("invalid [sources.{}] table: {e}", self.source))
                .with_help("see docs/configuration.md for the keys this source takes")
        })
    }

    /// This request without its earlier files: what a host that pages them
    /// ([`crate::Host::earlier`]) sends. The fields are listed (no `..`), so that a field
    /// added to the request cannot be forgotten here.
    pub fn without_earlier(&self) -> ContributeRequest {
        let ContributeRequest {
            source,
            config,
            config_dir,
            bundle_name,
            target,
            work_dir,
            earlier: _,
            python,
            facts,
            verbose,
        } = self;
        ContributeRequest {
            source: source.clone(),
            config: config.clone(),
            config_dir: config_dir.clone(),
            bundle_name: bundle_name.clone(),
            target: target.clone(),
            work_dir: work_dir.clone(),
            earlier: Vec::new(),
            python: python.clone(),
            facts: facts.clone(),
            verbose: *verbose,
        }
    }

    /// Resolve a path from the configuration against the configuration file's directory.
    pub fn resolve_path(&self, path: impl AsRef<std::path::Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constructors write exactly the JSON the struct literals of ABI 1.0 and 1.1
    /// plugins wrote: `#[non_exhaustive]` changes what Rust code may write, never the wire.
    #[test]
    fn values_built_with_the_constructors_write_the_1_1_json() {
        let package = Package::new("acme:t-1", "t", "1", "acme")
            .with_origin("index")
            .with_sha256("ab")
            .with_license("MIT");
        assert_eq!(
            serde_json::to_string(&package).expect("writes"),
            r#"{"id":"acme:t-1","name":"t","version":"1","kind":"acme","origin":"index","sha256":"ab","license":"MIT"}"#
        );
        // An entry leaves out its fields at their defaults, which every host and plugin
        // since 1.0 reads as those defaults; the full form older plugins write reads the same.
        let entry = Entry::path("/src/t", "t").with_package("acme:t-1");
        assert_eq!(
            serde_json::to_string(&entry).expect("writes"),
            r#"{"dest":"t","kind":"path","source":"/src/t","package":"acme:t-1"}"#
        );
        let full: Entry = serde_json::from_str(
            r#"{"dest":"t","kind":"path","source":"/src/t","exclude":[],"mode":null,"package":"acme:t-1","replace":false}"#,
        )
        .expect("reads");
        assert_eq!(full, entry);
        let file = BundleFile::new("env/lib/x.so", FileKind::File, 0o755, "conda")
            .with_source("/opt/env/lib/x.so", 7)
            .with_package("conda:x-1");
        assert_eq!(
            serde_json::to_string(&file).expect("writes"),
            r#"{"path":"env/lib/x.so","source":"/opt/env/lib/x.so","kind":{"type":"file"},"mode":493,"size":7,"plugin":"conda","package":"conda:x-1"}"#
        );
        let link = BundleFile::new(
            "env/lib/x",
            FileKind::Symlink {
                target: "x.so".into(),
            },
            0o777,
            "conda",
        );
        assert_eq!(
            serde_json::to_string(&link).expect("writes"),
            r#"{"path":"env/lib/x","source":null,"kind":{"type":"symlink","target":"x.so"},"mode":511,"size":0,"plugin":"conda","package":null}"#
        );
    }

    /// An ABI 1.0 plugin's file (no capacity) reads as one without, and a file without one
    /// is written exactly as ABI 1.0 wrote it; a capacity is one more key.
    #[test]
    fn a_prefix_file_without_capacity_reads_and_writes_as_in_abi_1_0() {
        let old = r#"{"path":"env/bin/x","mode":"binary"}"#;
        let file: PrefixFile = serde_json::from_str(old).expect("reads");
        assert_eq!(file, PrefixFile::new("env/bin/x", PrefixMode::Binary));
        assert_eq!(serde_json::to_string(&file).expect("writes"), old);
        let padded = file.with_capacity(255);
        assert_eq!(
            serde_json::to_string(&padded).expect("writes"),
            r#"{"path":"env/bin/x","mode":"binary","capacity":255}"#
        );
    }
}
